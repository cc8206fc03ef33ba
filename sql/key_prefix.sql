-- key_prefix: the key-prefix option writes every insert, update and delete
-- as <key JSON> TAB <event JSON>, where <key JSON> is byte for byte the
-- event's "key" field (null without a key), and leaves every other message
-- (begin, commit, truncate, logical message) as it is.  The event after the
-- tab is exactly the event written without the option.
CREATE TABLE kp_pk (id int PRIMARY KEY, v text);
CREATE TABLE kp_multi (a text, b int, v text, PRIMARY KEY (b, a));
CREATE TABLE kp_nokey (a int, b text);
CREATE TABLE kp_full (id int PRIMARY KEY, v text);
ALTER TABLE kp_full REPLICA IDENTITY FULL;
CREATE TABLE kp_jkey (k jsonb PRIMARY KEY, v text);
CREATE TABLE kp_root (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE kp_leaf (v text, id int NOT NULL);
ALTER TABLE kp_root ATTACH PARTITION kp_leaf FOR VALUES FROM (0) TO (100);

SELECT 'init' FROM pg_create_logical_replication_slot('key_prefix_slot', 'cdc_relay');

BEGIN;
INSERT INTO kp_pk VALUES (1, 'one'), (2, E'tab\there');
INSERT INTO kp_multi VALUES (E'x"\\\ty', 7, 'multi');
INSERT INTO kp_nokey VALUES (1, 'no key');
INSERT INTO kp_full VALUES (1, 'full');
INSERT INTO kp_jkey VALUES ('null', 'json null key'), ('{"a": [1, "b"]}', 'object key');
INSERT INTO kp_root VALUES (5, 'leaf');
UPDATE kp_pk SET v = 'uno' WHERE id = 1;
UPDATE kp_pk SET id = 10 WHERE id = 2;          -- key change: old key VT new key
UPDATE kp_nokey SET b = 'changed';
UPDATE kp_full SET v = 'full2';
UPDATE kp_multi SET b = 8;
DELETE FROM kp_pk WHERE id = 10;
DELETE FROM kp_nokey;
DELETE FROM kp_jkey WHERE k = 'null';
DELETE FROM kp_root WHERE id = 5;
SELECT 'msg' FROM pg_logical_emit_message(true, 'kp', E'has a\ttab');
TRUNCATE kp_full;
COMMIT;

-- as written (tabs shown as <TAB>)
SELECT replace(data, E'\t', '<TAB>') AS data
  FROM pg_logical_slot_peek_changes('key_prefix_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'key-prefix', 'true');
-- with partition-root the key is the root's (same columns, root order)
SELECT replace(data, E'\t', '<TAB>') AS data
  FROM pg_logical_slot_peek_changes('key_prefix_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'key-prefix', 'true', 'partition-root', 'true')
 WHERE data LIKE '%kp_root%';

-- Line by line against the output without the option (default fields):
-- insert/update/delete lines are <key> TAB <the same event>, where <key> is
-- the raw text of the event's key field (between the first ,"key": and the
-- first ,"before": -- quotes inside strings are escaped, so these are the
-- fields); all other lines are unchanged.
CREATE TEMP TABLE kp AS
SELECT p.i, p.data AS pre, n.data AS plain,
       (n.data::jsonb->>'op') IN ('c', 'u', 'd') AS is_change,
       substr(n.data, strpos(n.data, ',"key":') + 7,
              strpos(n.data, ',"before":') - strpos(n.data, ',"key":') - 7) AS raw_key
  FROM pg_logical_slot_peek_changes('key_prefix_slot', NULL, NULL, 'key-prefix', 'on')
       WITH ORDINALITY p(lsn, xid, data, i)
  JOIN pg_logical_slot_peek_changes('key_prefix_slot', NULL, NULL)
       WITH ORDINALITY n(lsn, xid, data, i) USING (i);
SELECT count(*) AS lines,
       count(*) FILTER (WHERE is_change) AS changes,
       count(*) FILTER (WHERE is_change AND raw_key IS NOT NULL
                          AND pre = raw_key || E'\t' || plain) AS changes_prefixed,
       count(*) FILTER (WHERE NOT is_change AND pre = plain AND pre LIKE '{%') AS others_unchanged,
       -- the first tab splits: the key part is JSON and equals the event's key
       count(*) FILTER (WHERE is_change
                          AND split_part(pre, E'\t', 1)::jsonb
                              = (substr(pre, strpos(pre, E'\t') + 1)::jsonb)->'key') AS key_matches
  FROM kp;
-- key null exactly when the table has no key
SELECT split_part(pre, E'\t', 1) AS key, plain::jsonb->>'table' AS tbl, plain::jsonb->>'op' AS op
  FROM kp WHERE is_change AND split_part(pre, E'\t', 1) = 'null' ORDER BY i;

-- the option takes a boolean
SELECT count(*) FILTER (WHERE data ~ '^null\t\{') AS null_keys
  FROM pg_logical_slot_peek_changes('key_prefix_slot', NULL, NULL, 'key-prefix', '1');
SELECT count(*) FILTER (WHERE data LIKE E'%\t%') AS prefixed
  FROM pg_logical_slot_peek_changes('key_prefix_slot', NULL, NULL, 'key-prefix', 'false');
\set VERBOSITY default
SELECT data FROM pg_logical_slot_peek_changes('key_prefix_slot', NULL, NULL, 'key-prefix', 'maybe');
\set VERBOSITY terse

SELECT count(*) FROM pg_logical_slot_get_changes('key_prefix_slot', NULL, NULL);
SELECT pg_drop_replication_slot('key_prefix_slot');
DROP TABLE kp_pk, kp_multi, kp_nokey, kp_full, kp_jkey, kp_root;
