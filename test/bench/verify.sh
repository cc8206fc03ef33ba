#!/usr/bin/env bash
# What `cdc-relay verify` costs on a large table (not part of make test or make bench):
# wall time and peak RSS of one verify of a BENCH_VERIFY_ROWS-row table (default
# 5,000,000), against the issue's bound of 200 MB RSS.
#
# A throwaway server (test/lib/pg.sh) gets one table big (id bigint primary key, a int,
# b text, c timestamptz, d numeric), filled and vacuumed; a 1-node Kafka
# (test/kafka/cluster.sh start 1, or the existing CDC_RELAY_KAFKA_BROKERS) gets its topic
# (3 partitions, compact); `cdc-relay run` takes the snapshot and streams.  Then
#   /usr/bin/time -v cdc-relay verify --json ...
# runs once, timed, and must exit 0 with every row found (rows = keys in Kafka, no
# missing / extra / different).  Printed: rows, the snapshot's seconds, verify's wall
# seconds, rows/s, peak RSS (MB, "Maximum resident set size"), the size the temporary
# SQLite database reached (sampled every second), and whether RSS stayed under the bound.
#
# Environment: BENCH_VERIFY_ROWS, BENCH_VERIFY_RSS_MB (the bound, default 200),
# CDC_RELAY_BIN (default relay/cdc-relay of this tree), PG_CONFIG, BENCH_TIMEOUT (s, per
# step, default 1800), TMPDIR (where verify's scratch database goes).
set -euo pipefail
export LC_ALL=C

BENCH_VERIFY_ROWS=${BENCH_VERIFY_ROWS:-5000000}
BENCH_VERIFY_RSS_MB=${BENCH_VERIFY_RSS_MB:-200}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCH_NAME=bench-verify
# shellcheck source=test/bench/lib.sh
source "$HERE/lib.sh"
need_positive BENCH_VERIFY_ROWS BENCH_VERIFY_RSS_MB BENCH_TIMEOUT
bench_pg_tools
RELAY=${CDC_RELAY_BIN:-$REPO/relay/cdc-relay}
[[ -x $RELAY ]] || die "$RELAY is not built (make)"
[[ -f "$PKGLIBDIR/cdc_relay.so" ]] || die "$PKGLIBDIR/cdc_relay.so is not installed"
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"
# shellcheck source=test/bench/scratch.sh
source "$HERE/scratch.sh"
scratch_pg bench-verify

log "filling big with $BENCH_VERIFY_ROWS rows"
t0=$(now)
psql_q <<SQL
CREATE EXTENSION cdc_relay;
CREATE TABLE big (id bigint PRIMARY KEY, a int, b text, c timestamptz, d numeric);
INSERT INTO big SELECT g, g % 1000, 'row ' || g || ' ' || md5(g::text),
    '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 second', g / 7.0
  FROM generate_series(1, $BENCH_VERIFY_ROWS) g;
VACUUM (FREEZE, ANALYZE) big;
SQL
log "filled in $(elapsed "$t0" "$(now)") s"

scratch_kafka
PREFIX=bverify$$
scratch_topic "$PREFIX.public.big" 3
scratch_topic "$PREFIX.__state" 1

scratch_relay big

# the scratch database's size, sampled every second (verify deletes it at exit)
VTMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-verify.XXXXXX")
(
    max=0
    while sleep 1; do
        s=$(du -sk "$VTMP" 2>/dev/null | cut -f1)
        ((s > max)) && { max=$s; echo "$max" >"$SCRATCH/db_kb"; }
    done
) &
SAMPLER_PID=$!
SCRATCH_PIDS+=("$SAMPLER_PID")

log "verify (timed)"
t0=$(now)
set +e
TMPDIR=$VTMP timeout "$BENCH_TIMEOUT" /usr/bin/time -v -o "$SCRATCH/time.txt" \
    "$RELAY" verify -d "$CONN" -b "$BS" --topic-prefix "$PREFIX" --json >"$SCRATCH/verify.json" 2>"$SCRATCH/verify.err"
VRC=$?
set -e
VSECS=$(elapsed "$t0" "$(now)")
kill "$SAMPLER_PID" 2>/dev/null
wait "$SAMPLER_PID" 2>/dev/null || true
rmdir "$VTMP" 2>/dev/null || log "verify left files in $VTMP"
RSS_KB=$(sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$SCRATCH/time.txt")
DB_KB=$(cat "$SCRATCH/db_kb" 2>/dev/null || echo 0)
[[ $VRC == 0 ]] || { cat "$SCRATCH/verify.err" >&2; die "verify exited $VRC (expected 0)"; }
read -r ROWS KEYS BAD < <(perl -MJSON::PP -e 'local $/; my $j = decode_json(<STDIN>); my $t = $j->{tables}[0];
    print join(" ", $t->{rows}, $t->{kafka_keys}, $t->{missing} + $t->{extra} + $t->{different} + $t->{unverifiable}), "\n"' \
    <"$SCRATCH/verify.json")
[[ $ROWS == "$BENCH_VERIFY_ROWS" && $KEYS == "$BENCH_VERIFY_ROWS" && $BAD == 0 ]] ||
    die "verify reported rows $ROWS, keys in Kafka $KEYS, $BAD not equal (expected $BENCH_VERIFY_ROWS, $BENCH_VERIFY_ROWS, 0)"
RSS_MB=$(awk -v k="$RSS_KB" 'BEGIN { printf "%.1f", k / 1024 }')
echo
echo "cdc-relay verify, one table of $BENCH_VERIFY_ROWS rows ($(nproc) CPUs, $(date -u +%F))"
printf '  %-28s %s\n' "relay snapshot (s)" "$SNAP_SECS" \
    "verify wall (s)" "$VSECS" \
    "verify rows/s" "$(rate "$BENCH_VERIFY_ROWS" "$VSECS")" \
    "verify peak RSS (MB)" "$RSS_MB" \
    "scratch SQLite (MB, peak)" "$(awk -v k="$DB_KB" 'BEGIN { printf "%.0f", k / 1024 }')" \
    "verify CPU user+sys (s)" "$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.1f", u + s }' "$SCRATCH/time.txt")" \
    "RSS < $BENCH_VERIFY_RSS_MB MB" "$(verdict "$RSS_MB" "<=" "$BENCH_VERIFY_RSS_MB")"
[[ $(verdict "$RSS_MB" "<=" "$BENCH_VERIFY_RSS_MB") == ok ]]
