-- large_txn: one transaction of 1,000,000 inserts, far larger than
-- logical_decoding_work_mem (64kB in test/logical.conf), so the server
-- spills it to disk; cdc_relay must still emit it whole and in order:
-- begin, 1,000,000 change events with seq 1..1000000, commit "events":1000000,
-- and number the next transaction from seq 1 again.  Rows are counted, not
-- printed.
\set VERBOSITY terse

SHOW logical_decoding_work_mem;
CREATE TABLE big_t (id int PRIMARY KEY, v text);
SELECT 'init' FROM pg_create_logical_replication_slot('large_txn_slot', 'cdc_relay');

BEGIN;
INSERT INTO big_t SELECT g, 'row ' || g FROM generate_series(1, 1000000) AS g;
COMMIT;
INSERT INTO big_t VALUES (0, 'next transaction');

CREATE TEMP TABLE big_events AS
SELECT row_number() OVER () AS n, data, data::jsonb AS d
  FROM pg_logical_slot_get_changes('large_txn_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

-- whole stream: 2 transactions, in order
SELECT count(*) AS lines,
       count(*) FILTER (WHERE d->>'op' = 'begin') AS begins,
       count(*) FILTER (WHERE d->>'op' = 'c') AS inserts,
       count(*) FILTER (WHERE d->>'op' NOT IN ('begin', 'c', 'commit')) AS other_ops,
       count(*) FILTER (WHERE d->>'op' = 'commit') AS commits
  FROM big_events;
SELECT n, data FROM big_events WHERE d->>'op' IN ('begin', 'commit') ORDER BY n;
-- the big transaction: begin first, commit last, seq 1..1000000 contiguous
-- and in insert order (the row inserted as the k-th has seq k)
SELECT count(*) AS changes,
       min((d->>'seq')::int) AS min_seq,
       max((d->>'seq')::int) AS max_seq,
       count(DISTINCT (d->>'seq')::int) AS distinct_seq,
       bool_and((d->>'seq')::int = n - 1) AS seq_is_position,
       bool_and((d->'after'->>'id')::int = (d->>'seq')::int) AS insert_order,
       bool_and(d->'key' = jsonb_build_object('id', (d->>'seq')::int)) AS keys,
       bool_and(d->>'table' = 'big_t' AND d->>'schema' = 'public' AND d->'before' = 'null'
                AND d->'after'->>'v' = 'row ' || (d->>'seq')) AS rows_ok
  FROM big_events WHERE n BETWEEN 2 AND 1000001;
SELECT n, data FROM big_events WHERE n IN (2, 500001, 1000001) ORDER BY n;
SELECT n, data FROM big_events WHERE n > 1000002 ORDER BY n;

-- the server really did spill it (slot statistics are updated when
-- decoding ends)
SELECT spill_txns >= 1 AS spilled, spill_bytes > 0 AS spill_bytes, stream_txns AS streamed,
       total_txns >= 2 AS total_txns
  FROM pg_stat_replication_slots WHERE slot_name = 'large_txn_slot';

SELECT pg_drop_replication_slot('large_txn_slot');
DROP TABLE big_events, big_t;
