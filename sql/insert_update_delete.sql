-- insert_update_delete: the basic change events.  Multi-row transactions,
-- seq numbering 1..n, begin/commit framing and the commit's event count,
-- rolled-back transactions emit nothing, empty transactions are skipped by
-- default (and framed with skip-empty-xacts=false), NULL values.
SELECT 'init' FROM pg_create_logical_replication_slot('insert_update_delete_slot', 'cdc_relay');

CREATE TABLE iud (id int PRIMARY KEY, name text, qty int, note text);

-- one single-row transaction
INSERT INTO iud VALUES (1, 'one', 10, NULL);

-- one multi-statement transaction
BEGIN;
INSERT INTO iud VALUES (2, 'two', 20, 'n2'), (3, 'three', 30, 'n3');
UPDATE iud SET qty = qty + 1 WHERE id IN (1, 2);
DELETE FROM iud WHERE id = 3;
UPDATE iud SET note = NULL, name = NULL WHERE id = 2;
COMMIT;

-- rolled back: nothing
BEGIN;
INSERT INTO iud VALUES (100, 'never', 0, NULL);
UPDATE iud SET qty = 0;
DELETE FROM iud;
ROLLBACK;

-- DDL only: no change event, so skipped by default
CREATE TABLE iud_other (x int);

-- no xid at all
SELECT count(*) FROM iud;

-- a last row with every nullable column NULL
INSERT INTO iud (id) VALUES (4);

CREATE TEMP TABLE ev AS
SELECT row_number() OVER () AS n, data
  FROM pg_logical_slot_peek_changes('insert_update_delete_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

SELECT data FROM pg_logical_slot_get_changes('insert_update_delete_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

-- every line is valid JSON with an op
SELECT count(*) AS events, count(*) FILTER (WHERE data::json->>'op' IS NOT NULL) AS with_op FROM ev;
-- per op counts: 3 begin, 3 commit, 4 c, 3 u, 1 d
SELECT data::jsonb->>'op' AS op, count(*) FROM ev GROUP BY 1 ORDER BY 1;
-- nothing from the rolled back transaction
SELECT count(*) AS rolled_back_rows FROM ev
 WHERE data::jsonb->'after'->>'id' = '100' OR data::jsonb->>'op' = 'd' AND data::jsonb->'key'->>'id' <> '3';
-- seq is 1..n inside each transaction, and commit.events = n
WITH t AS (
  SELECT n, data::jsonb AS j,
         sum(CASE WHEN data::jsonb->>'op' = 'begin' THEN 1 ELSE 0 END) OVER (ORDER BY n) AS txn
    FROM ev)
SELECT txn,
       array_agg((j->>'seq')::int ORDER BY n) FILTER (WHERE j ? 'seq') AS seqs,
       max((j->>'events')::int) AS commit_events,
       bool_and(CASE WHEN j ? 'seq' THEN true END) AS all_have_seq
  FROM t GROUP BY txn ORDER BY txn;
-- no xid/lsn/ts fields when switched off
SELECT count(*) AS with_volatile_fields FROM ev
 WHERE data::jsonb ?| ARRAY['xid', 'lsn', 'commit_lsn', 'end_lsn', 'ts'];
-- NULLs are JSON nulls, present in the row, never omitted
SELECT j->'after' AS after, jsonb_typeof(j->'after'->'note') AS note_type,
       j->'after' ? 'note' AS has_note
  FROM (SELECT data::jsonb AS j FROM ev) s
 WHERE j->>'op' IN ('c', 'u') AND j->'after'->>'id' IN ('2', '4') AND j->'after'->'name' = 'null';

-- the DDL-only transaction is framed when skip-empty-xacts is false
CREATE TABLE iud_other2 (x int);
SELECT data FROM pg_logical_slot_get_changes('insert_update_delete_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'skip-empty-xacts', 'false');
-- and not by default
CREATE TABLE iud_other3 (x int);
SELECT count(*) AS events FROM pg_logical_slot_get_changes('insert_update_delete_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

SELECT 'stop' FROM pg_drop_replication_slot('insert_update_delete_slot');
DROP TABLE iud, iud_other, iud_other2, iud_other3;
