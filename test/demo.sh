#!/usr/bin/env bash
# test/demo.sh — what `make demo` runs: watch cdc-relay turn a database into Kafka topics.
#
# Builds and installs cdc_relay (the output plugin, the extension and the cdc-relay
# daemon), starts a throwaway PostgreSQL server (test/lib/pg.sh), creates a small shop
# schema with a few rows, and starts
#     cdc-relay run -d <the server> -b embedded --topic-prefix cdc
# `-b embedded` runs a Kafka-protocol broker inside the relay (librdkafka's mock
# cluster: real Kafka wire protocol, data in memory, for tests and demos only); the
# relay logs its address and this script reads it from that line.  Then it shows, with
# kcat (an independent Kafka client):
#   1. the topics (kcat -L),
#   2. the initial snapshot: every existing row as an op "r" event,
#   3. a small live workload, step by step: each SQL statement, then the Kafka messages
#      it produced (topic, partition, offset, key, headers, value): inserts in one
#      transaction, an update, a transaction across two tables, a delete (and its
#      tombstone), a truncate, a logical message,
#   4. cdc-index, a search index that follows the customers topic: a row inserted in
#      PostgreSQL is found by a search within a fraction of a second, and gone once deleted,
#   5. a clean shutdown (SIGTERM): the relay waits for Kafka's acknowledgements,
#      confirms the slot's position to PostgreSQL and exits 0.
# Everything it starts is stopped and removed at the end (or on error).  About 20 s.
#
# Works as root on a fresh Debian 12 machine (test/lib/deps.sh installs what is missing).
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
source test/lib/deps.sh
make
make install

source test/lib/pg.sh
RELAY=${CDC_RELAY:-$PG_BINDIR/cdc-relay}     # CDC_RELAY: another build of the relay
INDEX=${CDC_INDEX:-$PG_BINDIR/cdc-index}     # CDC_INDEX: another build of cdc-index

if [[ -t 1 ]]; then
    say() { printf '\n\033[1m>>> %s\033[0m\n' "$*"; }
else
    say() { printf '\n>>> %s\n' "$*"; }
fi
die() { echo "demo: $*" >&2; exit 1; }
# wait_for SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds.
wait_for() {
    local i n=$(($1 * 10))
    shift
    for ((i = 0; i < n; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}

say "cdc-relay demo: starting a throwaway PostgreSQL 15 server"
DIR=$(pg_scratch_dir demo)
PORT=$(pg_free_port)
pg_start "$DIR" "$PORT"
echo "    data dir $DIR/data, port $PORT (127.0.0.1 and a socket in $DIR), wal_level=logical, fsync off"

say "A small schema with a few rows (and CREATE EXTENSION cdc_relay, which the relay's snapshot uses)"
pg_psql -e <<'SQL'
CREATE EXTENSION cdc_relay;
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text);
CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES customers,
    amount      numeric(10,2) NOT NULL,
    status      text NOT NULL DEFAULT 'new',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE order_notes (id serial PRIMARY KEY, order_id bigint, note text);
INSERT INTO customers VALUES (1, 'alice', 'alice@example.com'), (2, 'bob', NULL);
INSERT INTO orders (customer_id, amount) VALUES (1, 19.99), (2, 5.00), (1, 120.50);
INSERT INTO order_notes (order_id, note) VALUES (3, 'gift wrap');
SQL

# CDC_RELAY_KAFKA_BROKERS=host:port,... runs the demo against that Kafka cluster (its
# topics get a prefix of their own per run, so that an earlier run's messages stay apart).
BROKERS=${CDC_RELAY_KAFKA_BROKERS:-embedded}
PREFIX=cdc
[[ $BROKERS == embedded ]] || PREFIX=cdc_demo_$(date +%s)
say "Starting the relay: cdc-relay run -d '$(pg_connstr)' -b $BROKERS --topic-prefix $PREFIX"
if [[ $BROKERS == embedded ]]; then
    echo "    -b embedded: a Kafka-protocol broker inside the relay (test only, data in memory)."
else
    echo "    -b $BROKERS: your Kafka cluster (CDC_RELAY_KAFKA_BROKERS)."
fi
echo "    --topic-prefix $PREFIX: topics are $PREFIX.<schema>.<table> (required: give each database its own prefix)."
echo "    The slot does not exist yet, so the relay creates it and takes the initial snapshot first."
RELAY_LOG=$DIR/relay.log
"$RELAY" run -d "$(pg_connstr)" -b "$BROKERS" --topic-prefix "$PREFIX" --status-interval 1 2>"$RELAY_LOG" &
RELAY_PID=$!
pg_bg_pid "$RELAY_PID"
relay_streaming() {
    kill -0 "$RELAY_PID" 2>/dev/null || { cat "$RELAY_LOG" >&2; die "the relay exited"; }
    grep -q 'streaming from slot' "$RELAY_LOG"
}
wait_for 30 relay_streaming || { cat "$RELAY_LOG" >&2; die "the relay did not start streaming within 30 s"; }
BS=$BROKERS
[[ $BROKERS == embedded ]] &&
    BS=$(sed -n 's/.*embedded Kafka-protocol broker (test only, data in memory) at \([^ ]*\).*/\1/p' "$RELAY_LOG" | head -n 1)
[[ -n $BS ]] || { cat "$RELAY_LOG" >&2; die "no broker address in the relay's log"; }
echo "    the relay's log so far (stderr; timestamps in UTC):"
sed 's/^/      /' "$RELAY_LOG"
SHOWN_LOG=$(wc -l <"$RELAY_LOG")

topics() {
    say "Topics: kcat -L -b $BS   (one topic per table: $PREFIX.<schema>.<table>; $PREFIX.__state records the snapshot)"
    kcat -L -b "$BS" | grep -E '^ *(topic|broker) ' | sed 's/^ */    /'
}
topics

# Messages already shown: "topic partition offset" lines.
SEEN=$DIR/seen
: >"$SEEN"
# new_messages TOPIC: the messages of TOPIC not shown yet, one a line:
# topic TAB partition TAB offset TAB key TAB headers TAB value (NULL for a null key or value).
new_messages() {
    kcat -C -b "$BS" -t "$1" -o beginning -e -q -Z -X fetch.wait.max.ms=10 \
        -f '%t\t%p\t%o\t%k\t%h\t%s\n' 2>/dev/null |
        awk -F'\t' -v seen_file="$SEEN" '
            BEGIN { while ((getline line < seen_file) > 0) seen[line] = 1 }
            !(($1 " " $2 " " $3) in seen)' || true
}
# show TOPIC COUNT [TOPIC COUNT...]: wait (10 s at most) until each TOPIC has COUNT new
# messages, then print them and remember them as shown.
show() {
    local args=("$@") i topic want got out
    for ((i = 0; i < ${#args[@]}; i += 2)); do
        topic=${args[i]} want=${args[i + 1]}
        for ((got = 0, t = 0; t < 100; t++)); do
            out=$(new_messages "$topic")
            got=$(awk 'NF' <<<"$out" | wc -l)
            ((got >= want)) && break
            sleep 0.1
        done
        if ((got < want)); then
            echo "    the relay's log:" >&2
            sed 's/^/      /' "$RELAY_LOG" >&2
            die "expected $want new message(s) in $topic, found $got"
        fi
        awk -F'\t' '{
            printf "    %s  partition %s, offset %s\n", $1, $2, $3
            printf "      key:     %s\n", $4
            h = $5; gsub(",", ", ", h)
            printf "      headers: %s\n", h
            printf "      value:   %s\n", $6
        }' <<<"$out"
        awk -F'\t' 'NF { print $1 " " $2 " " $3 }' <<<"$out" >>"$SEEN"
    done
}

say "The snapshot: every row that existed when the slot was created, as an op \"r\" event"
echo "    key = the primary key as JSON (so a key always lands in the same partition),"
echo "    value = the event, headers = what a consumer can route on without parsing JSON."
show $PREFIX.public.customers 2 $PREFIX.public.orders 3 $PREFIX.public.order_notes 1

# step CAPTION SQL TOPIC COUNT [TOPIC COUNT...]: run SQL (one psql call), show the messages.
step() {
    local caption=$1 sql=$2
    shift 2
    say "Live: $caption"
    pg_psql -e -c "$sql" | sed 's/^/    /'
    echo "    -> in Kafka:"
    show "$@"
}

step "two orders in one transaction (op c; same commit_lsn, event_id <commit_lsn>/1 and /2)" \
    "INSERT INTO orders (customer_id, amount) VALUES (2, 42.00), (1, 7.25)" \
    $PREFIX.public.orders 2
step "an update (op u: key, and after = the new row)" \
    "UPDATE orders SET status = 'paid' WHERE id = 1" \
    $PREFIX.public.orders 1
step "one transaction across two tables (two topics, one commit_lsn)" \
    "BEGIN; INSERT INTO customers VALUES (3, 'carol', 'carol@example.com');
     INSERT INTO orders (customer_id, amount) VALUES (3, 99.90); COMMIT;" \
    $PREFIX.public.customers 1 $PREFIX.public.orders 1
step "a delete (op d), then a tombstone: same key, null value, for log compaction" \
    "DELETE FROM orders WHERE id = 2" \
    $PREFIX.public.orders 2
step "a truncate (op t: one message in the table's topic, key \"truncate\")" \
    "TRUNCATE order_notes" \
    $PREFIX.public.order_notes 1
step "a logical message from the application (pg_logical_emit_message: topic $PREFIX.messages, key = its prefix)" \
    "SELECT pg_logical_emit_message(true, 'shop', 'end of day') AS message_lsn" \
    $PREFIX.messages 1
# skip_shown TOPIC: mark what TOPIC holds now as shown, without printing it (the schemas
# topic gets a shape before each table's first change of the session too).
skip_shown() {
    sleep 0.5
    new_messages "$1" | awk -F'\t' 'NF { print $1 " " $2 " " $3 }' >>"$SEEN"
}
step "a request id and a domain event in one transaction (cdc_relay.set_request_id: a request_id header on every message; cdc_relay.emit: the payload in the application's own topic, in commit order, no outbox table)" \
    "BEGIN; SELECT cdc_relay.set_request_id('checkout-7f3a');
     UPDATE orders SET status = 'shipped' WHERE id = 1;
     SELECT cdc_relay.emit(topic => 'shop.events', key => '1', payload => '{\"type\":\"OrderShipped\",\"order\":1}');
     COMMIT;" \
    $PREFIX.public.orders 1 shop.events 1
skip_shown $PREFIX.schemas
step "a schema change: the new shape in $PREFIX.schemas before the first change that has it, the DDL text in $PREFIX.ddl" \
    "ALTER TABLE customers ADD COLUMN tier text NOT NULL DEFAULT 'basic';
     UPDATE customers SET tier = 'gold' WHERE id = 1;" \
    $PREFIX.schemas 1 $PREFIX.ddl 1 $PREFIX.public.customers 1
step "an online snapshot of one table while the stream goes on (cdc_relay.request_snapshot: op \"r\" rows in key-ordered chunks, no locks, resumable)" \
    "SELECT cdc_relay.request_snapshot('public.customers') AS job" \
    $PREFIX.public.customers 3

topics

say "cdc-index: a full-text search index (SQLite, FTS5) that follows the customers topic"
INDEX_DB=$DIR/index.db
INDEX_LOG=$DIR/index.log
echo "    $ cdc-index run -b $BS --db index.db --topic-prefix $PREFIX --table public.customers:name,email --serve 127.0.0.1:0"
echo "    It reads the topic (read_committed) into index.db: the latest row per key, an FTS5 index over"
echo "    name and email, and the Kafka offsets it applied, stored in the same SQLite transaction."
"$INDEX" run -b "$BS" --db "$INDEX_DB" --topic-prefix "$PREFIX" --table public.customers:name,email \
    --serve 127.0.0.1:0 2>"$INDEX_LOG" &
INDEX_PID=$!
pg_bg_pid "$INDEX_PID"
index_caught_up() {
    kill -0 "$INDEX_PID" 2>/dev/null || { cat "$INDEX_LOG" >&2; die "cdc-index exited"; }
    grep -q 'caught up' "$INDEX_LOG"
}
wait_for 30 index_caught_up || { cat "$INDEX_LOG" >&2; die "cdc-index did not catch up within 30 s"; }
sed 's/^/      /' "$INDEX_LOG"
SEARCH_PORT=$(sed -n 's/.*serving search on [^ ]*:\([0-9]*\)$/\1/p' "$INDEX_LOG" | head -n 1)
echo "    $ cdc-index search --db index.db 'example'   (rank, table, key, snippet)"
"$INDEX" search --db "$INDEX_DB" example | sed 's/^/      /'
now_ms() { echo $(($(date +%s%N) / 1000000)); }
found() { [[ -n $("$INDEX" search --db "$INDEX_DB" "$1") ]]; }
not_found() { ! found "$1"; }
say "Live: a new customer, then a search for her"
pg_psql -e -c "INSERT INTO customers VALUES (4, 'dora', 'dora@quill.example')" | sed 's/^/    /'
T0=$(now_ms)
wait_for 10 found quill || die "the new row was not found within 10 s"
echo "    found $(($(now_ms) - T0)) ms after the commit; GET /search?q=quill on port $SEARCH_PORT:"
curl -s "http://127.0.0.1:$SEARCH_PORT/search?q=quill" | sed 's/^/      /'
echo
pg_psql -e -c "DELETE FROM customers WHERE id = 4" | sed 's/^/    /'
T0=$(now_ms)
wait_for 10 not_found quill || die "the deleted row was still found after 10 s"
echo "    gone from the index $(($(now_ms) - T0)) ms after the commit:"
curl -s "http://127.0.0.1:$SEARCH_PORT/search?q=quill" | sed 's/^/      /'
echo
kill -TERM "$INDEX_PID"
wait "$INDEX_PID" || die "cdc-index exited with status $?"
echo "    cdc-index stopped (SIGTERM, exit 0); a restart goes on from the offsets in index.db."

say "Clean shutdown: SIGTERM to the relay"
echo "    It stops reading, waits until Kafka acknowledged every message, confirms that"
echo "    position to PostgreSQL (the slot's confirmed_flush_lsn) and exits 0.  A restart"
echo "    would go on from there, without a new snapshot."
kill -TERM "$RELAY_PID"
rc=0
wait "$RELAY_PID" || rc=$?
PG_BG_PIDS=()
tail -n +"$((SHOWN_LOG + 1))" "$RELAY_LOG" | sed 's/^/      /'
((rc == 0)) || die "the relay exited with status $rc"
pg_psql -At -c "SELECT '    slot ' || slot_name || ': confirmed_flush_lsn ' || confirmed_flush_lsn ||
                       ', server WAL at ' || pg_current_wal_lsn()
                  FROM pg_replication_slots WHERE slot_name = 'cdc_relay'"

say "Done. What you saw:"
cat <<'EOF'
  * cdc-relay took a consistent snapshot (op "r", "snapshot":true) from the slot's
    exported snapshot, then streamed every committed change from that exact point:
    no gap, no overlap.
  * One topic per table, cdc.<schema>.<table>; key = the primary key as JSON, so all
    changes of a row go to one partition, in commit order.
  * Headers: op, table, commit_lsn, xid, event_id (<commit_lsn>/<seq>: the same on a
    replay, so consumers can deduplicate), snapshot.
  * A delete is followed by a tombstone (null value) so that a compacted topic forgets
    the row; a truncate is one message in the table's topic, with the key "truncate"; application
    messages (pg_logical_emit_message) go to cdc.messages.
  * The value is exactly the plugin's JSON event: see README.md (Output format).
  * The slot's position moves only past transactions Kafka has acknowledged: after a
    crash, events since then come again (at-least-once), never fewer.
  * A request id set first in a transaction is on every message of it (header
    request_id); cdc_relay.emit() delivers domain events to the application's topic in
    commit order with the row changes, without an outbox table.
  * Schema events in cdc.schemas give each table's shape before the changes that
    have it; the DDL itself is in cdc.ddl; an online snapshot re-reads one table
    while the stream goes on.
  * cdc-index follows table topics into SQLite (latest row per key, FTS5 search, offsets
    in the same transaction as the rows): kill it at any moment, restart, and the index
    equals the table; `cdc-index search` and GET /search query it.
EOF
say "Stopping the server and removing $DIR"
pg_stop
