#!/usr/bin/env bash
# What cdc-index costs (not part of make test or make bench): how fast it builds its
# SQLite FTS5 index from a table topic, next to two references on the same data, and how
# soon a committed change can be found by a search.
#
# A throwaway server (test/lib/pg.sh) gets docs(id bigint primary key, title text, body
# text) of BENCH_INDEX_ROWS rows (default 1,000,000): title two words, body five
# six-word phrases (~200 bytes), words drawn uniformly from a vocabulary of 5,000
# pseudo-words of 3-8 letters a-p.  A 1-node Kafka (test/kafka/cluster.sh start 1, or the
# existing CDC_RELAY_KAFKA_BROKERS) gets its topic (3 partitions, compact); `cdc-relay
# run` snapshots it and goes on streaming.  Then:
#
# 1. apply throughput
#    - kcat: `kcat -C -e -o beginning -X isolation.level=read_committed` of the topic to
#      /dev/null (the rate of merely reading the topic; its end offsets give the
#      message count the others must reach);
#    - sqlite3: the rows as CSV (COPY ... TO STDOUT, untimed), then `.import --csv` into
#      a plain FTS5 table fts5(id UNINDEXED, title, body), timed (the cost floor of FTS5);
#    - cdc-index: `cdc-index run --table public.docs:title,body` from an empty database,
#      timed from its start until its --metrics endpoint (polled every 0.1 s) shows
#      cdc_index_messages_applied_total >= the topic's messages and
#      cdc_index_lag_messages 0 on every partition.  Its peak RSS (VmHWM) and CPU come
#      from /proc; the SQLite file size is index.db (+ its WAL) at that moment.
#    Printed: rows, seconds, rows/s, cdc-index's rate as a ratio of kcat's and of
#    sqlite3's (lib.sh's ratio: > 1x means cdc-index is faster).
# 2. live latency: with cdc-index caught up and the relay streaming, BENCH_INDEX_LATENCY
#    (default 200) single-row UPDATEs, one at a time, each setting body to a new unique
#    word, committed with synchronous_commit on (the server runs with it off for the fill;
#    an asynchronous commit reaches the walsender only after the WAL writer's next flush,
#    up to 200 ms later, which would dominate the measure).  The commit time is the
#    server's clock_timestamp() read by a second statement right after the UPDATE
#    committed; then GET /search?q=WORD on cdc-index --serve is polled every 10 ms until
#    it returns that row.  Printed: median, p90 and max of
#    (the found response's arrival - commit), in ms.  The floor includes psql's exit
#    (polling starts when the psql that ran the UPDATE is gone) and the 10 ms grid.
#
# Environment: BENCH_INDEX_ROWS, BENCH_INDEX_LATENCY, CDC_RELAY_BIN (default
# relay/cdc-relay of this tree), CDC_INDEX_BIN (default cdc-index next to it), PG_CONFIG,
# CDC_RELAY_KAFKA_BROKERS, BENCH_TIMEOUT (s, per step, default 1800).
set -euo pipefail
export LC_ALL=C

BENCH_INDEX_ROWS=${BENCH_INDEX_ROWS:-1000000}
BENCH_INDEX_LATENCY=${BENCH_INDEX_LATENCY:-200}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCH_NAME=bench-index
# shellcheck source=test/bench/lib.sh
source "$HERE/lib.sh"
need_positive BENCH_INDEX_ROWS BENCH_INDEX_LATENCY BENCH_TIMEOUT
bench_pg_tools
RELAY=${CDC_RELAY_BIN:-$REPO/relay/cdc-relay}
INDEX=${CDC_INDEX_BIN:-$(dirname "$RELAY")/cdc-index}
[[ -x $RELAY ]] || die "$RELAY is not built (make)"
[[ -x $INDEX ]] || die "$INDEX is not built (make)"
[[ -f "$PKGLIBDIR/cdc_relay.so" ]] || die "$PKGLIBDIR/cdc_relay.so is not installed"
for tool in kcat sqlite3 curl perl; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"
PARTS=3
# shellcheck source=test/bench/scratch.sh
source "$HERE/scratch.sh"
scratch_pg bench-index

# The vocabulary and the phrases are temporary tables: the relay never sees them.
log "filling docs with $BENCH_INDEX_ROWS rows"
t0=$(now)
psql_q <<SQL
CREATE EXTENSION cdc_relay;
CREATE TEMP TABLE vocab (i int PRIMARY KEY, w text NOT NULL);
INSERT INTO vocab SELECT i, translate(substr(md5('w' || i), 1, 3 + i % 6), '0123456789', 'ghijklmnop')
  FROM generate_series(0, 4999) i;
CREATE TEMP TABLE phrase (i int PRIMARY KEY, p text NOT NULL);
INSERT INTO phrase SELECT n, (SELECT string_agg(v.w, ' ' ORDER BY k) FROM generate_series(1, 6) k
                              JOIN vocab v ON v.i = abs(hashint8extended(n * 6 + k, 7) % 5000))
  FROM generate_series(0, 19999) n;
ANALYZE vocab;
ANALYZE phrase;
CREATE TABLE docs (id bigint PRIMARY KEY, title text, body text);
INSERT INTO docs
SELECT g, t1.w || ' ' || t2.w, p1.p || ' ' || p2.p || ' ' || p3.p || ' ' || p4.p || ' ' || p5.p
  FROM generate_series(1, $BENCH_INDEX_ROWS) g
  JOIN vocab t1 ON t1.i = abs(hashint8extended(g, 1) % 5000)
  JOIN vocab t2 ON t2.i = abs(hashint8extended(g, 2) % 5000)
  JOIN phrase p1 ON p1.i = abs(hashint8extended(g, 11) % 20000)
  JOIN phrase p2 ON p2.i = abs(hashint8extended(g, 12) % 20000)
  JOIN phrase p3 ON p3.i = abs(hashint8extended(g, 13) % 20000)
  JOIN phrase p4 ON p4.i = abs(hashint8extended(g, 14) % 20000)
  JOIN phrase p5 ON p5.i = abs(hashint8extended(g, 15) % 20000);
VACUUM (FREEZE, ANALYZE) docs;
SQL
read -r NROWS AVG_BODY < <(sql bench "SELECT count(*), round(avg(octet_length(body))) FROM docs" | tr '|' ' ')
[[ $NROWS == "$BENCH_INDEX_ROWS" ]] || die "docs has $NROWS rows (expected $BENCH_INDEX_ROWS)"
log "filled in $(elapsed "$t0" "$(now)") s (body: $AVG_BODY bytes on average)"

scratch_kafka
PREFIX=bindex$$
TOPIC=$PREFIX.public.docs
scratch_topic "$TOPIC" "$PARTS"
scratch_topic "$PREFIX.__state" 1

scratch_relay docs

# --- 1. apply throughput ---------------------------------------------------------------

log "kcat: read $TOPIC to /dev/null (timed)"
t0=$(now)
timeout "$BENCH_TIMEOUT" kcat -C -b "$BS" -t "$TOPIC" -e -o beginning -X isolation.level=read_committed \
    >/dev/null 2>"$SCRATCH/kcat.err" || { cat "$SCRATCH/kcat.err" >&2; die "kcat failed"; }
KCAT_SECS=$(elapsed "$t0" "$(now)")
# "% Reached end of topic T [P] at offset N": the end of each partition, so their sum is
# the topic's message count (at-least-once: no transaction markers)
MSGS=$(sed -n 's/.*Reached end of topic .* \[\([0-9]*\)\] at offset \([0-9]*\).*/\1 \2/p' "$SCRATCH/kcat.err" |
    awk '{ if ($2 > end[$1]) end[$1] = $2 } END { for (p in end) { n++; s += end[p] } print n + 0, s + 0 }')
read -r KCAT_PARTS MSGS <<<"$MSGS"
[[ $KCAT_PARTS == "$PARTS" ]] || { cat "$SCRATCH/kcat.err" >&2; die "kcat reached the end of $KCAT_PARTS partitions (expected $PARTS)"; }
((MSGS >= BENCH_INDEX_ROWS)) || die "$TOPIC holds $MSGS messages, fewer than the $BENCH_INDEX_ROWS rows"
log "kcat: $MSGS messages in $KCAT_SECS s"

log "sqlite3: COPY docs to CSV, then .import into FTS5 (timed)"
psql_q -c "COPY docs (id, title, body) TO STDOUT (FORMAT csv)" >"$SCRATCH/docs.csv"
t0=$(now)
timeout "$BENCH_TIMEOUT" sqlite3 "$SCRATCH/floor.db" >"$SCRATCH/floor.out" 2>&1 <<SQL ||
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
CREATE VIRTUAL TABLE docs USING fts5(id UNINDEXED, title, body);
.import --csv $SCRATCH/docs.csv docs
SQL
    { cat "$SCRATCH/floor.out" >&2; die "sqlite3 .import failed"; }
FLOOR_SECS=$(elapsed "$t0" "$(now)")
FLOOR_ROWS=$(sqlite3 -readonly "$SCRATCH/floor.db" "SELECT count(*) FROM docs")
[[ $FLOOR_ROWS == "$BENCH_INDEX_ROWS" ]] || die "the FTS5 table got $FLOOR_ROWS rows (expected $BENCH_INDEX_ROWS)"
FLOOR_KB=$(du -ck "$SCRATCH"/floor.db* | tail -n 1 | cut -f1)
rm -f "$SCRATCH"/floor.db* "$SCRATCH/docs.csv"
log "sqlite3: $FLOOR_ROWS rows in $FLOOR_SECS s"

# metrics_caught_up ADDR: whether cdc-index applied >= $MSGS messages and lags on none of
# the $PARTS partitions
metrics_caught_up() {
    curl -sf --max-time 2 "http://$1/metrics" 2>/dev/null |
        awk -v n="$MSGS" -v parts="$PARTS" '
            /^cdc_index_messages_applied_total / { a = $2 }
            /^cdc_index_lag_messages\{/ { p++; if ($2 != 0) bad = 1 }
            END { exit !(a >= n && p == parts && !bad) }'
}

log "cdc-index: build $SCRATCH/index.db from $TOPIC (timed)"
DB=$SCRATCH/index.db
t0=$(now)
"$INDEX" run -b "$BS" --db "$DB" --topic-prefix "$PREFIX" --table public.docs:title,body \
    --serve 127.0.0.1:0 --metrics 127.0.0.1:0 >"$SCRATCH/index.log" 2>&1 &
INDEX_PID=$!
SCRATCH_PIDS+=("$INDEX_PID")
deadline=$((SECONDS + BENCH_TIMEOUT))
ADDR=
until [[ -n $ADDR ]]; do
    kill -0 "$INDEX_PID" 2>/dev/null || { tail -n 20 "$SCRATCH/index.log" >&2; die "cdc-index exited"; }
    ((SECONDS < deadline)) || die "cdc-index logged no address within $BENCH_TIMEOUT s"
    ADDR=$(sed -n 's/.*serving search and metrics on \([0-9.]*:[0-9]*\).*/\1/p' "$SCRATCH/index.log" | head -n 1)
    [[ -n $ADDR ]] || sleep 0.05
done
until metrics_caught_up "$ADDR"; do
    kill -0 "$INDEX_PID" 2>/dev/null || { tail -n 20 "$SCRATCH/index.log" >&2; die "cdc-index exited"; }
    ((SECONDS < deadline)) || die "cdc-index did not catch up within $BENCH_TIMEOUT s"
    sleep 0.1
done
INDEX_SECS=$(elapsed "$t0" "$(now)")
RSS_KB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$INDEX_PID/status")
INDEX_CPU=$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$INDEX_PID/stat")
DB_KB=$(du -k "$DB" | cut -f1)
WAL_KB=$(du -k "$DB-wal" 2>/dev/null | cut -f1 || echo 0)
IDX_ROWS=$(sqlite3 -readonly "$DB" 'SELECT count(*) FROM "public.docs"')
[[ $IDX_ROWS == "$BENCH_INDEX_ROWS" ]] || die "the index holds $IDX_ROWS rows (expected $BENCH_INDEX_ROWS)"
log "cdc-index: caught up in $INDEX_SECS s: $(grep -o 'caught up with.*' "$SCRATCH/index.log" | head -n 1)"

# --- 2. live latency -------------------------------------------------------------------

log "latency: $BENCH_INDEX_LATENCY single-row updates, GET /search polled every 10 ms"
perl - "$BINDIR/psql" "http://$ADDR" "$BENCH_INDEX_ROWS" "$BENCH_INDEX_LATENCY" "$$" 60 \
    >"$SCRATCH/latency.txt" <<'PERL' || die "the latency loop failed"
use strict;
use warnings;
use HTTP::Tiny;
use JSON::PP;
use Time::HiRes qw(time sleep);

my ($psql, $url, $rows, $n, $tag, $timeout) = @ARGV;
my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 10);

# the ids of the rows a search for $word returns (the key is the JSON object {"id": N})
sub found
{
	my ($word) = @_;
	my $r = $http->get("$url/search?q=$word&table=public.docs&limit=10");
	die "GET /search?q=$word: $r->{status} $r->{content}\n" unless $r->{success};
	return map { ref($_->{key}) eq 'HASH' ? $_->{key}{id} : () } @{ decode_json($r->{content})->{results} };
}

found('warmup');
for my $i (1 .. $n)
{
	my $id = 1 + ($i * 7919) % $rows;
	my $word = "zq${tag}q$i";
	# two statements, two transactions: the second reads the clock after the first committed.
	# synchronous_commit on: the walsender sends only flushed WAL, and an asynchronous commit
	# waits for the WAL writer (up to wal_writer_delay, 200 ms) before any decoder sees it
	open(my $fh, '-|', $psql, qw(-X -q -A -t -v ON_ERROR_STOP=1),
		'-c', 'SET synchronous_commit = on',
		'-c', "UPDATE docs SET body = '$word' WHERE id = $id",
		'-c', 'SELECT extract(epoch FROM clock_timestamp())') or die "psql: $!\n";
	my $committed = <$fh>;
	close($fh) or die "psql failed for update $i\n";
	chomp $committed;
	my $deadline = time() + $timeout;
	while (1)
	{
		my $t = time();
		if (grep { $_ == $id } found($word))
		{
			printf "%.3f\n", (time() - $committed) * 1000;
			last;
		}
		die "update $i (id $id, '$word') not found within $timeout s\n" if $t > $deadline;
		my $next = $t + 0.010 - time();
		sleep($next) if $next > 0;
	}
}
PERL
NLAT=$(wc -l <"$SCRATCH/latency.txt")
[[ $NLAT == "$BENCH_INDEX_LATENCY" ]] || die "$NLAT latencies (expected $BENCH_INDEX_LATENCY)"
read -r LAT_MED LAT_P90 LAT_MAX < <(sort -g "$SCRATCH/latency.txt" |
    awk '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
                              i = int(NR * 0.9); if (i < NR * 0.9) i++
                              printf "%.1f %.1f %.1f\n", m, a[i], a[NR] }')

mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
echo
echo "cdc-index, docs of $BENCH_INDEX_ROWS rows (body ~$AVG_BODY bytes), $PARTS partitions ($(nproc) CPUs, $(date -u +%F))"
printf '  %-36s %s\n' "relay snapshot (s)" "$SNAP_SECS" \
    "kcat read_committed (s)" "$KCAT_SECS" \
    "kcat rows/s" "$(rate "$BENCH_INDEX_ROWS" "$KCAT_SECS")" \
    "sqlite3 .import into FTS5 (s)" "$FLOOR_SECS" \
    "sqlite3 rows/s" "$(rate "$BENCH_INDEX_ROWS" "$FLOOR_SECS")" \
    "sqlite3 FTS5 file (MB)" "$(mb "$FLOOR_KB")" \
    "cdc-index catch-up (s)" "$INDEX_SECS" \
    "cdc-index rows/s" "$(rate "$BENCH_INDEX_ROWS" "$INDEX_SECS")" \
    "cdc-index / kcat" "$(ratio "$KCAT_SECS" "$INDEX_SECS")" \
    "cdc-index / sqlite3 FTS5" "$(ratio "$FLOOR_SECS" "$INDEX_SECS")" \
    "cdc-index peak RSS (MB)" "$(mb "$RSS_KB")" \
    "cdc-index CPU user+sys (s)" "$INDEX_CPU" \
    "cdc-index SQLite file, WAL (MB)" "$(mb "$DB_KB"), $(mb "$WAL_KB")"
echo "live latency, $BENCH_INDEX_LATENCY single-row updates (commit -> GET /search finds the row, polled every 10 ms)"
printf '  %-36s %s\n' "median (ms)" "$LAT_MED" "p90 (ms)" "$LAT_P90" "max (ms)" "$LAT_MAX"
