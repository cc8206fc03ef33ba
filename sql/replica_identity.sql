-- replica_identity: what "key" and "before" hold under each REPLICA IDENTITY
-- setting.  key = replica identity index columns (PK or USING INDEX), the PK
-- under FULL/NOTHING, null without any; taken from the old tuple when the WAL
-- has one.  before = identity columns under DEFAULT/INDEX (only when the WAL
-- logged an old tuple: delete, or update changing the identity), every
-- column under FULL, null under NOTHING and without a key.  A key that the
-- WAL does not carry (a delete under NOTHING) is null with "key_unknown"
-- saying why; a table without a key has a null key and no key_unknown.
SELECT 'init' FROM pg_create_logical_replication_slot('replica_identity_slot', 'cdc_relay');

CREATE TABLE ri_default (id int PRIMARY KEY, v text, w int);
CREATE TABLE ri_full_pk (id int PRIMARY KEY, v text, w int);
ALTER TABLE ri_full_pk REPLICA IDENTITY FULL;
CREATE TABLE ri_full_nopk (id int, v text, w int);
ALTER TABLE ri_full_nopk REPLICA IDENTITY FULL;
CREATE TABLE ri_index (id int PRIMARY KEY, code text NOT NULL, region int NOT NULL, w int);
CREATE UNIQUE INDEX ri_index_code_region ON ri_index (region, code);
ALTER TABLE ri_index REPLICA IDENTITY USING INDEX ri_index_code_region;
CREATE TABLE ri_nothing (id int PRIMARY KEY, v text, w int);
ALTER TABLE ri_nothing REPLICA IDENTITY NOTHING;
CREATE TABLE ri_nopk (id int, v text, w int);

-- for each table: insert, update (not the key), update (the key), delete
INSERT INTO ri_default VALUES (1, 'a', 1);
UPDATE ri_default SET w = 2 WHERE id = 1;
UPDATE ri_default SET id = 10, v = 'b' WHERE id = 1;
DELETE FROM ri_default WHERE id = 10;

INSERT INTO ri_full_pk VALUES (1, 'a', 1);
UPDATE ri_full_pk SET w = 2 WHERE id = 1;
UPDATE ri_full_pk SET id = 10, v = 'b' WHERE id = 1;
DELETE FROM ri_full_pk WHERE id = 10;

INSERT INTO ri_full_nopk VALUES (1, 'a', 1);
UPDATE ri_full_nopk SET w = 2 WHERE id = 1;
UPDATE ri_full_nopk SET id = 10, v = 'b' WHERE id = 1;
DELETE FROM ri_full_nopk WHERE id = 10;

INSERT INTO ri_index VALUES (1, 'x', 7, 1);
UPDATE ri_index SET w = 2 WHERE id = 1;              -- identity unchanged
UPDATE ri_index SET id = 10 WHERE id = 10 - 9;       -- PK changed, identity unchanged
UPDATE ri_index SET code = 'y' WHERE id = 10;        -- identity changed
DELETE FROM ri_index WHERE id = 10;

INSERT INTO ri_nothing VALUES (1, 'a', 1);
UPDATE ri_nothing SET w = 2 WHERE id = 1;
UPDATE ri_nothing SET id = 10, v = 'b' WHERE id = 1;
DELETE FROM ri_nothing WHERE id = 10;

INSERT INTO ri_nopk VALUES (1, 'a', 1);
-- (UPDATE and DELETE on a table without replica identity are refused
-- while it is published; here it is not in any publication)
UPDATE ri_nopk SET w = 2 WHERE id = 1;
UPDATE ri_nopk SET id = 10, v = 'b' WHERE id = 1;
DELETE FROM ri_nopk WHERE id = 10;

CREATE TEMP TABLE ev AS
SELECT row_number() OVER () AS n, data
  FROM pg_logical_slot_peek_changes('replica_identity_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

SELECT data FROM pg_logical_slot_get_changes('replica_identity_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

-- the same, as a table: one row per change.  Under NOTHING the WAL never
-- has an old tuple: the key comes from the new row (so a key-changing update
-- shows the NEW id) and a delete has neither key nor before.
SELECT j->>'table' AS tbl, j->>'op' AS op, j->'key' AS key, j->'before' AS before, j->'after' AS after,
       j->>'key_unknown' AS key_unknown
  FROM (SELECT n, data::jsonb AS j FROM ev) s
 WHERE j->>'op' IN ('c', 'u', 'd') ORDER BY n;

-- assertions per replica identity
SELECT j->>'table' AS tbl,
       count(*) AS changes,
       count(*) FILTER (WHERE jsonb_typeof(j->'key') = 'object') AS with_key,
       count(*) FILTER (WHERE jsonb_typeof(j->'before') = 'object') AS with_before,
       count(*) FILTER (WHERE j->>'op' = 'd' AND j->'after' = 'null') AS deletes_without_after
  FROM (SELECT data::jsonb AS j FROM ev) s
 WHERE j->>'op' IN ('c', 'u', 'd') GROUP BY 1 ORDER BY 1;

-- DEFAULT: the key-changing update's key is the OLD id, before holds only it
SELECT j->'key' = '{"id":1}' AS key_is_old, j->'before' = '{"id":1}' AS before_is_old_key,
       j->'after'->'id' = '10' AS after_is_new
  FROM (SELECT data::jsonb AS j FROM ev) s
 WHERE j->>'table' = 'ri_default' AND j->>'op' = 'u' AND j->'after'->>'v' = 'b';
-- FULL: before is the complete old row for both updates and the delete
SELECT j->>'table' AS tbl, j->>'op' AS op, j->'before' AS before
  FROM (SELECT n, data::jsonb AS j FROM ev) s
 WHERE j->>'table' LIKE 'ri\_full%' AND j->>'op' IN ('u', 'd') ORDER BY n;
-- INDEX: key columns are those of the identity index, in index order
SELECT DISTINCT string_agg(k, ',') OVER (PARTITION BY n) AS key_columns
  FROM (SELECT n, data FROM ev WHERE data::jsonb->>'table' = 'ri_index' AND data::jsonb->>'op' <> 'begin') s,
       LATERAL json_object_keys(data::json->'key') AS k;

SELECT 'stop' FROM pg_drop_replication_slot('replica_identity_slot');
DROP TABLE ri_default, ri_full_pk, ri_full_nopk, ri_index, ri_nothing, ri_nopk;
