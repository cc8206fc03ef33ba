-- toast_key: a key column whose value is stored out of line (TOAST).  An
-- update that does not change it writes no copy of it to the WAL; when the
-- WAL has no old key either (REPLICA IDENTITY NOTHING, or an identity index
-- that was dropped), the key's value is not known.  It is never made up
-- from the key columns that are known ({} or {"a":1} would be another
-- row's key): "key" is null, "key_unknown" says why, and with key-prefix
-- the prefix is null too, so the relay sends the event without a Kafka
-- key.  A delete whose old row the WAL lacks says so the same way.  Where
-- the WAL has the old key (DEFAULT, USING INDEX, FULL) the real key is
-- written.
CREATE TABLE tk_val (name text PRIMARY KEY, val text);
INSERT INTO tk_val VALUES ('k', repeat('1234567890', 250)), ('k1', repeat('k1', 500)),
                          ('k2', repeat('K2', 500)), ('pad', repeat('p', 1800));
-- long values shown by name
CREATE FUNCTION tk_show(s text) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT replace(replace(replace(replace(s,
         (SELECT val FROM tk_val WHERE name = 'k'), '<k>'),
         (SELECT val FROM tk_val WHERE name = 'k1'), '<k1>'),
         (SELECT val FROM tk_val WHERE name = 'k2'), '<k2>'),
         (SELECT val FROM tk_val WHERE name = 'pad'), '<pad>') $$;

-- The issue's reproduction (plus include-* off, and long values shortened)
CREATE TABLE tk (k text PRIMARY KEY, v int);
ALTER TABLE tk ALTER COLUMN k SET STORAGE EXTERNAL;
ALTER TABLE tk REPLICA IDENTITY NOTHING;
-- the composite-key form: a is known, k is not
CREATE TABLE tk_comp (a int, k text, v int, PRIMARY KEY (a, k));
ALTER TABLE tk_comp ALTER COLUMN k SET STORAGE EXTERNAL;
ALTER TABLE tk_comp REPLICA IDENTITY NOTHING;
-- two key columns out of line (pad cannot move out of line, so both do)
CREATE TABLE tk_two (k1 text, "Key 2" text, pad text, v int, PRIMARY KEY (k1, "Key 2"));
ALTER TABLE tk_two ALTER COLUMN k1 SET STORAGE EXTERNAL,
                   ALTER COLUMN "Key 2" SET STORAGE EXTERNAL,
                   ALTER COLUMN pad SET STORAGE PLAIN;
ALTER TABLE tk_two REPLICA IDENTITY NOTHING;
-- an identity index that was dropped: the WAL has no old key, as NOTHING
CREATE TABLE tk_dropped (k text PRIMARY KEY, u int NOT NULL, v int);
ALTER TABLE tk_dropped ALTER COLUMN k SET STORAGE EXTERNAL;
CREATE UNIQUE INDEX tk_dropped_u ON tk_dropped (u);
ALTER TABLE tk_dropped REPLICA IDENTITY USING INDEX tk_dropped_u;
-- identities whose WAL has the old key: the real key
CREATE TABLE tk_default (k text PRIMARY KEY, v int);
ALTER TABLE tk_default ALTER COLUMN k SET STORAGE EXTERNAL;
CREATE TABLE tk_full (k text PRIMARY KEY, v int);
ALTER TABLE tk_full ALTER COLUMN k SET STORAGE EXTERNAL;
ALTER TABLE tk_full REPLICA IDENTITY FULL;
CREATE TABLE tk_index (id int PRIMARY KEY, k text NOT NULL, v int);
ALTER TABLE tk_index ALTER COLUMN k SET STORAGE EXTERNAL;
CREATE UNIQUE INDEX tk_index_k ON tk_index (k);
ALTER TABLE tk_index REPLICA IDENTITY USING INDEX tk_index_k;

-- (values written here, not copied from tk_val, where they are compressed:
-- out of line and uncompressed, as the unchanged_toast of the updates shows)
INSERT INTO tk_comp VALUES (1, repeat('1234567890', 250), 1);
INSERT INTO tk_two VALUES (repeat('k1', 500), repeat('K2', 500), repeat('p', 1800), 1);
INSERT INTO tk_dropped VALUES (repeat('1234567890', 250), 1, 1);
DROP INDEX tk_dropped_u;
INSERT INTO tk_default VALUES (repeat('1234567890', 250), 1);
INSERT INTO tk_full VALUES (repeat('1234567890', 250), 1);
INSERT INTO tk_index VALUES (1, repeat('1234567890', 250), 1);
SELECT 'init' FROM pg_create_logical_replication_slot('toast_key_slot', 'cdc_relay');
INSERT INTO tk VALUES (repeat('1234567890', 250), 1);
UPDATE tk SET v = 2;
UPDATE tk_comp SET v = 2;
UPDATE tk_comp SET a = 2;          -- changes the key, from a key not known
UPDATE tk_two SET v = 2;
UPDATE tk_dropped SET v = 2;
UPDATE tk_default SET v = 2;
UPDATE tk_full SET v = 2;
UPDATE tk_index SET v = 2;
DELETE FROM tk;
DELETE FROM tk_comp;
DELETE FROM tk_dropped;
DELETE FROM tk_default;

-- with key-prefix (tabs shown as <TAB>)
SELECT tk_show(replace(data, E'\t', '<TAB>')) AS data
  FROM pg_logical_slot_peek_changes('toast_key_slot', NULL, NULL,
       'key-prefix', 'true', 'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0')
 WHERE data NOT LIKE '{"op":"begin"%' AND data NOT LIKE '{"op":"commit"%';

-- Every change of these tables, with and without key-prefix, and the
-- table's key columns (all have one: primary key, or identity index).
CREATE TEMP TABLE tk_ev AS
SELECT p.data AS pre, n.data AS plain, n.data::jsonb AS j, k.key_columns
  FROM pg_logical_slot_peek_changes('toast_key_slot', NULL, NULL, 'key-prefix', 'true')
       WITH ORDINALITY p(lsn, xid, data, i)
  JOIN pg_logical_slot_peek_changes('toast_key_slot', NULL, NULL)
       WITH ORDINALITY n(lsn, xid, data, i) USING (i)
  JOIN (VALUES ('tk', '{k}'::text[]), ('tk_comp', '{a,k}'), ('tk_two', '{"Key 2",k1}'),
               ('tk_dropped', '{k}'), ('tk_default', '{k}'), ('tk_full', '{k}'),
               ('tk_index', '{k}')) k(tbl, key_columns) ON k.tbl = n.data::jsonb->>'table'
 WHERE n.data::jsonb->>'op' IN ('c', 'u', 'd');
-- A key is whole or null: never a part of the key columns.  The prefix is
-- the key field byte for byte (null with it), key_unknown comes exactly
-- with a null key (these tables all have a key), and a known key is the
-- row's.
SELECT count(*) AS changes,
       count(*) FILTER (WHERE j->'key' = 'null') AS null_keys,
       count(*) FILTER (WHERE j->'key' <> 'null'
                          AND ARRAY(SELECT jsonb_object_keys(j->'key') ORDER BY 1) <> key_columns) AS partial_keys,
       count(*) FILTER (WHERE pre <> split_part(pre, E'\t', 1) || E'\t' || plain) AS prefix_mismatch,
       count(*) FILTER (WHERE split_part(pre, E'\t', 1)::jsonb <> j->'key') AS prefix_not_key,
       count(*) FILTER (WHERE (j ? 'key_unknown') <> (j->'key' = 'null')) AS key_unknown_wrong,
       count(*) FILTER (WHERE j->'key'->>'k' IS NOT NULL
                          AND j->'key'->>'k' <> (SELECT val FROM tk_val WHERE name = 'k')) AS wrong_values
  FROM tk_ev;
-- an unknown key column is always one the event lists in unchanged_toast
SELECT j->>'table' AS tbl, j->>'op' AS op, j->'unchanged_toast' AS unchanged_toast, j->>'key_unknown' AS key_unknown
  FROM tk_ev WHERE j ? 'key_unknown' ORDER BY 1, 2;

SELECT 'stop' FROM pg_drop_replication_slot('toast_key_slot');
DROP TABLE tk, tk_comp, tk_two, tk_dropped, tk_default, tk_full, tk_index, tk_val;
DROP FUNCTION tk_show(text);
