-- pk_change: updates that change the primary key.  The WAL logs the old key
-- for them, so "key" carries the OLD key (and "before" the old key columns),
-- while "after" is the new row; single-column and composite primary keys,
-- under REPLICA IDENTITY DEFAULT and FULL.
SELECT 'init' FROM pg_create_logical_replication_slot('pk_change_slot', 'cdc_relay');

CREATE TABLE pk_single (id int PRIMARY KEY, v text);
CREATE TABLE pk_comp (a int, b text, v text, PRIMARY KEY (b, a));
CREATE TABLE pk_single_full (id int PRIMARY KEY, v text);
ALTER TABLE pk_single_full REPLICA IDENTITY FULL;
CREATE TABLE pk_comp_full (a int, b text, v text, PRIMARY KEY (b, a));
ALTER TABLE pk_comp_full REPLICA IDENTITY FULL;

INSERT INTO pk_single VALUES (1, 'x'), (2, 'y');
INSERT INTO pk_comp VALUES (1, 'k', 'x'), (2, 'k', 'y');
INSERT INTO pk_single_full VALUES (1, 'x');
INSERT INTO pk_comp_full VALUES (1, 'k', 'x');
SELECT count(*) > 0 AS inserts_seen FROM pg_logical_slot_get_changes('pk_change_slot', NULL, NULL);

BEGIN;
UPDATE pk_single SET id = 11 WHERE id = 1;              -- key only
UPDATE pk_single SET id = 12, v = 'yy' WHERE id = 2;    -- key and value
UPDATE pk_comp SET a = 11 WHERE a = 1;                  -- one key column
UPDATE pk_comp SET a = 12, b = 'kk', v = 'yy' WHERE a = 2; -- both key columns
UPDATE pk_comp SET v = 'z' WHERE a = 11;                -- no key change
UPDATE pk_single_full SET id = 11, v = 'xx' WHERE id = 1;
UPDATE pk_comp_full SET b = 'kk' WHERE a = 1;
-- several rows at once, keys shifted (each row still has its own old key)
UPDATE pk_single SET id = id + 100;
COMMIT;

CREATE TEMP TABLE ev AS
SELECT row_number() OVER () AS n, data
  FROM pg_logical_slot_peek_changes('pk_change_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

SELECT data FROM pg_logical_slot_get_changes('pk_change_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

-- key = old key, after = new row; before = old key columns (DEFAULT) or the
-- whole old row (FULL); key columns in primary key order (b, a)
SELECT j->>'seq' AS seq, j->>'table' AS tbl, j->'key' AS key, j->'before' AS before, j->'after' AS after
  FROM (SELECT n, data::jsonb AS j FROM ev) s WHERE j->>'op' = 'u' ORDER BY n;

SELECT j->>'seq' AS seq,
       (SELECT string_agg(k, ',') FROM json_object_keys(data::json->'key') k) AS key_columns,
       j->'key' <> (SELECT jsonb_object_agg(k, j->'after'->k) FROM jsonb_object_keys(j->'key') k) AS key_differs_from_after
  FROM (SELECT n, data, data::jsonb AS j FROM ev) s WHERE j->>'op' = 'u' ORDER BY n;

SELECT 'stop' FROM pg_drop_replication_slot('pk_change_slot');
DROP TABLE pk_single, pk_comp, pk_single_full, pk_comp_full;
