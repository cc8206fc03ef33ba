-- savepoints: subtransactions.  Changes of a subtransaction rolled back with
-- ROLLBACK TO never appear; released (or still open at commit) ones appear,
-- in order; seq stays contiguous 1..n and the commit counts them.
SELECT 'init' FROM pg_create_logical_replication_slot('savepoints_slot', 'cdc_relay');

CREATE TABLE sp (id int PRIMARY KEY, v text);

BEGIN;
INSERT INTO sp VALUES (1, 'top');
SAVEPOINT a;
INSERT INTO sp VALUES (2, 'a released');
RELEASE SAVEPOINT a;
SAVEPOINT b;
INSERT INTO sp VALUES (3, 'b rolled back');
UPDATE sp SET v = 'b rolled back' WHERE id = 1;
ROLLBACK TO SAVEPOINT b;
INSERT INTO sp VALUES (4, 'after b');
SAVEPOINT c;
INSERT INTO sp VALUES (5, 'c');
SAVEPOINT d;
INSERT INTO sp VALUES (6, 'd rolled back');
ROLLBACK TO SAVEPOINT d;
UPDATE sp SET v = 'c updated' WHERE id = 5;
SAVEPOINT e;
DELETE FROM sp WHERE id = 2;
-- e and c are still open at COMMIT: their changes count
COMMIT;

-- a transaction whose only changes were rolled back to a savepoint: skipped
BEGIN;
SAVEPOINT x;
INSERT INTO sp VALUES (7, 'x rolled back');
ROLLBACK TO SAVEPOINT x;
COMMIT;

-- a subtransaction aborted by an error (as in a PL/pgSQL EXCEPTION block)
DO $$
BEGIN
  INSERT INTO sp VALUES (8, 'plpgsql top');
  BEGIN
    INSERT INTO sp VALUES (9, 'plpgsql rolled back');
    INSERT INTO sp VALUES (8, 'duplicate');
  EXCEPTION WHEN unique_violation THEN
    INSERT INTO sp VALUES (10, 'plpgsql handler');
  END;
END $$;

CREATE TEMP TABLE ev AS
SELECT row_number() OVER () AS n, data
  FROM pg_logical_slot_peek_changes('savepoints_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

SELECT data FROM pg_logical_slot_get_changes('savepoints_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

SELECT count(*) AS events, count(data::json) AS valid_json FROM ev;
-- nothing rolled back shows up
SELECT count(*) AS rolled_back_seen FROM ev WHERE data::jsonb->'after'->>'v' LIKE '%rolled back%';
-- seq contiguous and matching events, per transaction
WITH t AS (
  SELECT n, data::jsonb AS j,
         sum(CASE WHEN data::jsonb->>'op' = 'begin' THEN 1 ELSE 0 END) OVER (ORDER BY n) AS txn
    FROM ev)
SELECT txn,
       array_agg((j->>'seq')::int ORDER BY n) FILTER (WHERE j ? 'seq') = array(SELECT generate_series(1, max((j->>'events')::int))) AS seq_contiguous,
       max((j->>'events')::int) AS commit_events
  FROM t GROUP BY txn ORDER BY txn;
-- final table state matches what the events say
SELECT * FROM sp ORDER BY id;

-- large subtransactions (spilled to disk past logical_decoding_work_mem)
BEGIN;
SAVEPOINT big1;
INSERT INTO sp SELECT g, 'spill rolled back' FROM generate_series(1000, 2999) g;
ROLLBACK TO SAVEPOINT big1;
SAVEPOINT big2;
INSERT INTO sp SELECT g, 'spill kept' FROM generate_series(3000, 4999) g;
RELEASE SAVEPOINT big2;
SAVEPOINT big3;
UPDATE sp SET v = 'spill rolled back' WHERE id >= 3000;
ROLLBACK TO SAVEPOINT big3;
DELETE FROM sp WHERE id BETWEEN 3000 AND 3009;
COMMIT;
SELECT data::jsonb->>'op' AS op, data::jsonb->'after'->>'v' AS v, count(*),
       min((data::jsonb->>'seq')::int) AS min_seq, max((data::jsonb->>'seq')::int) AS max_seq,
       max((data::jsonb->>'events')::int) AS commit_events
  FROM pg_logical_slot_get_changes('savepoints_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0')
 GROUP BY 1, 2 ORDER BY 4, 1;

SELECT 'stop' FROM pg_drop_replication_slot('savepoints_slot');
DROP TABLE sp;
