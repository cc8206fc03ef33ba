-- partitions: changes on partitioned tables.  By default events name the
-- leaf partition and carry the leaf's row shape; with partition-root=true
-- they name the top-most root and the row (key, before, after) is converted
-- to the root's shape, even for a partition whose physical column order
-- differs (a dropped column, reordered columns).  Updates moving a row
-- between partitions are a delete plus an insert.  TRUNCATE of the root
-- names the root once with partition-root.
CREATE TABLE pt (id int PRIMARY KEY, region text, v text) PARTITION BY RANGE (id);
CREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM (0) TO (100);
-- pt_2: different physical layout, then attached
CREATE TABLE pt_2 (junk int, v text, region text, id int NOT NULL);
ALTER TABLE pt_2 DROP COLUMN junk;
ALTER TABLE pt ATTACH PARTITION pt_2 FOR VALUES FROM (100) TO (200);
ALTER TABLE pt_2 REPLICA IDENTITY FULL;
-- a second level: pt_3 is itself partitioned
CREATE TABLE pt_3 PARTITION OF pt FOR VALUES FROM (200) TO (300) PARTITION BY RANGE (id);
CREATE TABLE pt_3a PARTITION OF pt_3 FOR VALUES FROM (200) TO (300);
SELECT attrelid::regclass AS rel, attnum, attname, attisdropped
  FROM pg_attribute WHERE attrelid IN ('pt'::regclass, 'pt_2'::regclass) AND attnum > 0
 ORDER BY 1, 2;

SELECT 'init' FROM pg_create_logical_replication_slot('partitions_slot', 'cdc_relay');

BEGIN;
INSERT INTO pt VALUES (1, 'eu', 'a'), (101, 'us', 'b'), (201, 'eu', 'c');
INSERT INTO pt_2 (id, region, v) VALUES (102, 'us', 'direct');
UPDATE pt SET v = 'b2' WHERE id = 101;                  -- within pt_2 (FULL)
UPDATE pt SET v = 'a2' WHERE id = 1;                    -- within pt_1
UPDATE pt SET id = 150 WHERE id = 1;                    -- pt_1 -> pt_2
UPDATE pt SET id = 50, v = 'back' WHERE id = 102;       -- pt_2 -> pt_1
UPDATE pt SET id = 250 WHERE id = 101;                  -- pt_2 -> pt_3a
DELETE FROM pt WHERE id = 150;
DELETE FROM pt WHERE id = 201;
COMMIT;

-- leaf names and leaf shapes (pt_2: v, region, id)
SELECT data FROM pg_logical_slot_peek_changes('partitions_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
-- root name and root shape (id, region, v) for every partition
SELECT data FROM pg_logical_slot_peek_changes('partitions_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'partition-root', 'true');

CREATE TEMP TABLE ev AS
SELECT row_number() OVER () AS n, l.data AS leaf, r.data AS root
  FROM pg_logical_slot_peek_changes('partitions_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0') WITH ORDINALITY l(lsn, xid, data, i)
  JOIN pg_logical_slot_get_changes('partitions_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'partition-root', 'true') WITH ORDINALITY r(lsn, xid, data, i) USING (i);
-- same events, same values; only the table name and the column order differ
SELECT count(*) AS events,
       count(*) FILTER (WHERE leaf::jsonb - 'table' = root::jsonb - 'table') AS same_content,
       count(*) FILTER (WHERE root::jsonb ? 'table' AND root::jsonb->>'table' <> 'pt') AS root_not_pt
  FROM ev;
SELECT leaf::jsonb->>'table' AS leaf_table, root::jsonb->>'table' AS root_table,
       (SELECT string_agg(k, ',') FROM json_object_keys(leaf::json->CASE WHEN leaf::jsonb->>'op' = 'd' THEN 'before' ELSE 'after' END) k) AS leaf_columns,
       (SELECT string_agg(k, ',') FROM json_object_keys(root::json->CASE WHEN root::jsonb->>'op' = 'd' THEN 'before' ELSE 'after' END) k) AS root_columns,
       count(*)
  FROM ev WHERE leaf::jsonb ? 'table'
 GROUP BY 1, 2, 3, 4 ORDER BY 1;
-- before under FULL on pt_2, in root shape
SELECT root::jsonb->>'seq' AS seq, root::json->'before' AS root_before
  FROM ev WHERE leaf::jsonb->>'table' = 'pt_2' AND root::jsonb->'before' <> 'null' ORDER BY n;

-- TRUNCATE of the root: the WAL lists the root and every leaf
TRUNCATE pt;
SELECT data FROM pg_logical_slot_peek_changes('partitions_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT data FROM pg_logical_slot_get_changes('partitions_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'partition-root', 'true');

-- A leaf whose replica identity is its own index, not the root's primary
-- key: the WAL's old tuple has only that index's columns (v).  With
-- partition-root the key must still identify the old row: it may not
-- report the root's key columns as null when the WAL does not have them.
CREATE TABLE pt_4 PARTITION OF pt FOR VALUES FROM (300) TO (400);
ALTER TABLE pt_4 ALTER COLUMN v SET NOT NULL;
CREATE UNIQUE INDEX pt_4_v ON pt_4 (v);
ALTER TABLE pt_4 REPLICA IDENTITY USING INDEX pt_4_v;
INSERT INTO pt VALUES (301, 'eu', 'v301'), (302, 'eu', 'v302');
SELECT count(*) > 0 AS seen FROM pg_logical_slot_get_changes('partitions_slot', NULL, NULL);
UPDATE pt SET v = 'v301b' WHERE id = 301;               -- identity changed
DELETE FROM pt WHERE id = 302;
-- leaf: key and before are pt_4's identity, v
SELECT data::jsonb->>'op' AS op, data::jsonb->'key' AS key, data::jsonb->'before' AS before
  FROM pg_logical_slot_peek_changes('partitions_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0')
 WHERE data::jsonb ? 'table';
-- root: every value in key and before is the old row's real value
SELECT j->>'op' AS op,
       NOT jsonb_path_exists(j->'key', '$.* ? (@ == null)') AS key_has_no_nulls,
       NOT jsonb_path_exists(j->'before', '$.* ? (@ == null)') AS before_has_no_nulls,
       (SELECT bool_and(o.r->k = j->'key'->k) FROM jsonb_object_keys(j->'key') k) AS key_matches_old_row
  FROM (SELECT data::jsonb AS j FROM pg_logical_slot_get_changes('partitions_slot', NULL, NULL,
          'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0', 'partition-root', 'true')) s,
       LATERAL (SELECT CASE j->>'op' WHEN 'u' THEN '{"id":301,"region":"eu","v":"v301"}'::jsonb
                                     ELSE '{"id":302,"region":"eu","v":"v302"}'::jsonb END AS r) o
 WHERE j ? 'table';

-- TRUNCATE of a single partition with partition-root names that partition,
-- not the root: emptying one partition does not empty the root
TRUNCATE pt_1;
SELECT data FROM pg_logical_slot_get_changes('partitions_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'partition-root', 'true');

SELECT 'stop' FROM pg_drop_replication_slot('partitions_slot');
DROP TABLE pt;
