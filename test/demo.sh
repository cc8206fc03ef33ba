#!/usr/bin/env bash
# test/demo.sh — what `make demo` runs: watch cdc_relay turn live database changes
# into JSON events.
#
# Builds and installs the plugin, starts a throwaway PostgreSQL server (test/lib/pg.sh),
# creates an `orders` table and a logical replication slot using cdc_relay, and
# streams the slot with pg_recvlogical while a ~15 second workload runs: inserts,
# updates, a multi-row transaction, a rolled-back transaction, a delete, a truncate
# and a logical message.  Every event is printed as it arrives (through `jq -c` when
# jq is installed).  Then everything is stopped and removed; nothing is left running.
#
# The Kafka relay (cdc-relay) joins this demo in a later version: today the events
# go to pg_recvlogical's standard output instead of a Kafka topic.
#
# Works as root on a fresh Debian 12 machine (installs what is missing).
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
source test/lib/deps.sh
make
make install

source test/lib/pg.sh

if [[ -t 1 ]]; then
    say() { printf '\n\033[1m>>> %s\033[0m\n' "$*"; }
else
    say() { printf '\n>>> %s\n' "$*"; }
fi

say "cdc_relay demo: starting a throwaway PostgreSQL 15 server"
DIR=$(pg_scratch_dir demo)
PORT=$(pg_free_port)
pg_start "$DIR" "$PORT"
echo "    data dir $DIR/data, port $PORT (127.0.0.1 and a socket in $DIR), fsync off"

pg_psql <<'SQL'
CREATE TABLE orders (
    id         bigserial PRIMARY KEY,
    customer   text NOT NULL,
    amount     numeric(10,2) NOT NULL,
    status     text NOT NULL DEFAULT 'new',
    created_at timestamptz NOT NULL DEFAULT now(),
    details    jsonb
);
CREATE TABLE order_notes (id serial PRIMARY KEY, order_id bigint, note text);
SQL
pg_psql -At -c "SELECT '    slot ' || slot_name || ' (plugin cdc_relay) created at ' || lsn
                  FROM pg_create_logical_replication_slot('demo_slot', 'cdc_relay')"

if command -v jq >/dev/null 2>&1; then
    format=(jq --unbuffered -c .)
else
    format=(cat)
fi

say "streaming: pg_recvlogical -S demo_slot --start -P cdc_relay -f -   (one JSON object per line)"
# The postgres user runs pg_recvlogical; its pid goes to a file so we can stop it
# with SIGINT at the end, and its messages to a file shown at the end.
{
    pg_as_user sh -c 'echo $$ > "$1/recvlogical.pid"; shift; exec "$@" 2>"$0"' \
        "$DIR/recvlogical.err" "$DIR" \
        "$PG_BINDIR/pg_recvlogical" -d "$(pg_connstr)" -S demo_slot --start -P cdc_relay \
        -f - -F 1 -s 1 --no-loop
} | "${format[@]}" &
FORMAT_PID=$!
pg_bg_pid "$FORMAT_PID"
for _ in $(seq 50); do [[ -s $DIR/recvlogical.pid ]] && break; sleep 0.1; done
RECV_PID=$(cat "$DIR/recvlogical.pid")
pg_bg_pid "$RECV_PID"
sleep 1

if ! kill -0 "$RECV_PID" 2>/dev/null; then
    echo "pg_recvlogical did not start:" >&2
    cat "$DIR/recvlogical.err" >&2
    exit 1
fi

step() {    # step CAPTION SQL...   (each SQL argument is its own transaction)
    local sql
    say "$1"
    shift
    for sql; do
        pg_psql -c "$sql"
    done
    sleep "${STEP_PAUSE:-1.5}"
}

step "INSERT three orders, one transaction each: begin, c, commit" \
    "INSERT INTO orders (customer, amount, details) VALUES ('alice', 19.99, '{\"items\": 1}')" \
    "INSERT INTO orders (customer, amount, details) VALUES ('bob', 5.00, NULL)" \
    "INSERT INTO orders (customer, amount, details) VALUES ('carol', 120.50, '{\"items\": 3, \"gift\": true}')"

step "UPDATE one order's status (op u; key + after)" \
    "UPDATE orders SET status = 'paid' WHERE customer = 'alice'"

step "A transaction with several rows: one begin, seq 1..4, one commit with events=4" "
BEGIN;
INSERT INTO orders (customer, amount) VALUES ('dave', 42.00), ('erin', 7.25);
UPDATE orders SET status = 'shipped', details = jsonb_set(coalesce(details, '{}'), '{carrier}', '\"ups\"')
 WHERE customer = 'carol';
INSERT INTO order_notes (order_id, note) VALUES (3, 'fragile');
COMMIT;"

step "A ROLLED BACK transaction: no event at all" "
BEGIN;
INSERT INTO orders (customer, amount) VALUES ('mallory', 1000000);
ROLLBACK;"

step "DELETE an order (op d; before carries the key)" \
    "DELETE FROM orders WHERE customer = 'bob'"

step "A transactional logical message next to a change (op m, inside the transaction)" "
BEGIN;
UPDATE orders SET status = 'closed' WHERE customer = 'dave';
DO \$\$ BEGIN PERFORM pg_logical_emit_message(true, 'demo', 'batch 42 closed'); END \$\$;
COMMIT;"

step "TRUNCATE order_notes (op t)" "TRUNCATE order_notes"

say "A few more orders, one per second"
for i in 1 2 3 4; do
    pg_psql -c "INSERT INTO orders (customer, amount) VALUES ('customer$i', $i * 10.5)"
    sleep 1
done

# Let pg_recvlogical print everything (it confirms once a second), then stop it.
END_LSN=$(pg_psql -At -c "SELECT pg_current_wal_lsn()")
for _ in $(seq 100); do
    caught_up=$(pg_psql -At -c "SELECT coalesce(confirmed_flush_lsn >= '$END_LSN', false)
                                  FROM pg_replication_slots WHERE slot_name = 'demo_slot'")
    [[ $caught_up == t ]] && break
    sleep 0.1
done
kill -INT "$RECV_PID" 2>/dev/null || true
wait "$FORMAT_PID" 2>/dev/null || true
PG_BG_PIDS=()
# PostgreSQL 15's pg_recvlogical reports "unexpected termination" after SIGINT; that
# is how it always stops.  Anything else it said is shown.
grep -v 'unexpected termination of replication stream' "$DIR/recvlogical.err" >&2 || true

say "Done. What you saw:"
cat <<'EOF'
  * Each transaction arrived as {"op":"begin"}, its changes, then {"op":"commit"}.
    "commit_lsn" ties them together, "seq" numbers the changes 1..n, and the
    commit's "events" says how many there were: a consumer can tell a complete
    transaction from a partial one.
  * Changes: "c" insert, "u" update, "d" delete, "t" truncate, "m" logical message.
    "key" is the primary key, "after" the new row (null for deletes), "before" the
    old key or row (see REPLICA IDENTITY).  numeric and jsonb values arrive intact.
  * The rolled-back transaction produced nothing: only committed work is decoded,
    in commit order.
  * Events carry xid, lsn, commit_lsn and the commit timestamp; plugin options
    (pg_recvlogical -o name=value) can drop them, filter tables and actions, and
    more: see README.md (Output format, Plugin options).
  * Coming in a later version: the cdc-relay process reads this same stream and
    produces the events to Kafka.
EOF
say "Stopping the server and removing $DIR"
pg_stop
