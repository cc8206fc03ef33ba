-- ddl: schema changes while changes are pending.  Each event must have the
-- row shape (column names, types, key, replica identity) in force when that
-- change was made, whether the DDL ran between transactions or inside the
-- same transaction as the changes; table rewrites emit no events.
SELECT 'init' FROM pg_create_logical_replication_slot('ddl_slot', 'cdc_relay');

-- 1. DDL in separate transactions, decoded all at once afterwards
CREATE TABLE ddl_a (id int PRIMARY KEY, n int, s text);
INSERT INTO ddl_a VALUES (1, 10, 's1');
ALTER TABLE ddl_a ADD COLUMN added int DEFAULT 5;        -- no rewrite (missing value)
INSERT INTO ddl_a VALUES (2, 20, 's2', 6);
ALTER TABLE ddl_a RENAME COLUMN s TO label;
INSERT INTO ddl_a VALUES (3, 30, 's3', 7);
ALTER TABLE ddl_a ALTER COLUMN n TYPE text USING 'n=' || n;  -- rewrite
INSERT INTO ddl_a VALUES (4, 'n=40', 's4', 8);
ALTER TABLE ddl_a DROP COLUMN label;
INSERT INTO ddl_a VALUES (5, 'n=50', 9);
ALTER TABLE ddl_a ALTER COLUMN n TYPE numeric USING substr(n, 3)::numeric / 4;  -- rewrite, text -> numeric
INSERT INTO ddl_a VALUES (6, 15.25, 10);
UPDATE ddl_a SET added = added + 100 WHERE id = 1;
ALTER TABLE ddl_a REPLICA IDENTITY FULL;
UPDATE ddl_a SET n = 0 WHERE id IN (1, 2);
DELETE FROM ddl_a WHERE id = 3;

SELECT data FROM pg_logical_slot_get_changes('ddl_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

-- 2. several DDLs interleaved with changes inside one transaction
CREATE TABLE ddl_b (id int, v int);
INSERT INTO ddl_b VALUES (0, 0);
-- (created and filled in a committed transaction, so the table has a row
-- whose physical shape is the original one)
SELECT count(*) > 0 AS seen FROM pg_logical_slot_get_changes('ddl_slot', NULL, NULL);
ALTER TABLE ddl_b REPLICA IDENTITY FULL;
BEGIN;
INSERT INTO ddl_b VALUES (1, 1);
ALTER TABLE ddl_b ADD COLUMN w text DEFAULT 'dflt';   -- rows 0 and 1 get it as missing value
INSERT INTO ddl_b VALUES (2, 2, 'two');
UPDATE ddl_b SET w = 'zero' WHERE id = 0;               -- FULL: before has w = 'dflt'
ALTER TABLE ddl_b RENAME COLUMN v TO value;
INSERT INTO ddl_b VALUES (3, 3, 'three');
ALTER TABLE ddl_b ALTER COLUMN value TYPE bigint USING value * 1000000000000;
INSERT INTO ddl_b VALUES (4, 4000000000000, 'four');
ALTER TABLE ddl_b ADD PRIMARY KEY (id);
ALTER TABLE ddl_b REPLICA IDENTITY DEFAULT;
UPDATE ddl_b SET w = 'FOUR' WHERE id = 4;
ALTER TABLE ddl_b DROP COLUMN value;
INSERT INTO ddl_b VALUES (5, 'five');
ALTER TABLE ddl_b ALTER COLUMN w TYPE varchar(10);      -- no rewrite
UPDATE ddl_b SET id = 50 WHERE id = 5;
ALTER TABLE ddl_b ADD COLUMN seqcol int GENERATED ALWAYS AS IDENTITY;  -- rewrite
DELETE FROM ddl_b WHERE id = 1;
INSERT INTO ddl_b (id, w) VALUES (6, 'six');
COMMIT;

CREATE TEMP TABLE ev AS
SELECT row_number() OVER () AS n, data
  FROM pg_logical_slot_peek_changes('ddl_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT data FROM pg_logical_slot_get_changes('ddl_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

-- column lists per event, in order; seq contiguous in the single transaction
SELECT (j->>'seq')::int AS seq, j->>'op' AS op,
       (SELECT string_agg(k, ',') FROM json_object_keys(CASE WHEN j->>'op' = 'd' THEN data::json->'before' ELSE data::json->'after' END) k) AS columns,
       (SELECT string_agg(k, ',') FROM json_object_keys(CASE WHEN json_typeof(data::json->'key') = 'object' THEN data::json->'key' END) k) AS key_columns
  FROM (SELECT n, data, data::jsonb AS j FROM ev) s WHERE j ? 'seq' ORDER BY n;
-- value types follow the column type: value as JSON number (int, then bigint)
SELECT (j->>'seq')::int AS seq, jsonb_typeof(j->'after'->'value') AS value_type, j->'after'->'value' AS value
  FROM (SELECT n, data::jsonb AS j FROM ev) s WHERE j->'after' ? 'value' ORDER BY n;
SELECT max((data::jsonb->>'events')::int) AS commit_events, count(*) FILTER (WHERE data::jsonb ? 'seq') AS changes FROM ev;

-- 3. DDL in subtransactions: a rolled-back ALTER leaves no trace on later rows
CREATE TABLE ddl_c (id int PRIMARY KEY, v int);
BEGIN;
INSERT INTO ddl_c VALUES (1, 1);
SAVEPOINT s1;
ALTER TABLE ddl_c ADD COLUMN w text DEFAULT 'x';
INSERT INTO ddl_c VALUES (2, 2, 'two');
ROLLBACK TO SAVEPOINT s1;
INSERT INTO ddl_c VALUES (3, 3);
SAVEPOINT s2;
ALTER TABLE ddl_c RENAME COLUMN v TO vv;
RELEASE SAVEPOINT s2;
INSERT INTO ddl_c VALUES (4, 4);
SAVEPOINT s3;
ALTER TABLE ddl_c ALTER COLUMN vv TYPE text;            -- rewrite, rolled back
INSERT INTO ddl_c VALUES (5, '5');
ROLLBACK TO SAVEPOINT s3;
INSERT INTO ddl_c VALUES (6, 6);
COMMIT;
INSERT INTO ddl_c VALUES (7, 7);
SELECT data FROM pg_logical_slot_get_changes('ddl_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

SELECT 'stop' FROM pg_drop_replication_slot('ddl_slot');
DROP TABLE ddl_a, ddl_b, ddl_c;
