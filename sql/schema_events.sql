-- schema_events: with schema-events, a schema event ("op":"s": columns with
-- declared types and typmods, not-null, key columns, replica identity) comes
-- before the first change or truncate of a relation in a decoding session,
-- and again before the first one after its shape changed, wherever in the
-- transaction the DDL ran; once per shape; it carries the seq of the event
-- after it and takes none.  Without the option nothing changes.  A rename of
-- the table gives a schema event under the new name (same relid).  With
-- partition-root the shape is the root's.  cdc_relay.table_schema() writes
-- the same body for a snapshot.  A value added to an enum changes no shape;
-- a rename of a column's type does.
-- (the DDL capture's messages are ddl_capture's test)
SET cdc_relay.capture_ddl = off;
CREATE TYPE se_mood AS ENUM ('ok', 'sad');
CREATE TABLE se_a (id int PRIMARY KEY, n numeric(10,2), s varchar(20));
SELECT 'init' FROM pg_create_logical_replication_slot('se_slot', 'cdc_relay');

-- se_events(): the pending events (consumed), relid and user type oids
-- replaced (they differ between runs), the other options fixed
CREATE FUNCTION se_events(VARIADIC opts text[] DEFAULT '{}') RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT regexp_replace(regexp_replace(data, '"relid":[0-9]+', '"relid":0'),
                        '"type_oid":[0-9]{5,}', '"type_oid":0', 'g')
    FROM pg_logical_slot_get_changes('se_slot', NULL, NULL,
         VARIADIC ARRAY['include-xids', '0', 'include-lsn', '0',
                        'include-timestamp', '0'] || opts)
$$;
-- the same without consuming them
CREATE FUNCTION se_peek(VARIADIC opts text[] DEFAULT '{}') RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT regexp_replace(regexp_replace(data, '"relid":[0-9]+', '"relid":0'),
                        '"type_oid":[0-9]{5,}', '"type_oid":0', 'g')
    FROM pg_logical_slot_peek_changes('se_slot', NULL, NULL,
         VARIADIC ARRAY['include-xids', '0', 'include-lsn', '0',
                        'include-timestamp', '0'] || opts)
$$;

-- 1. first change: one schema event first; a second change: none
INSERT INTO se_a VALUES (1, 1.5, 'a');
INSERT INTO se_a VALUES (2, 2.5, 'b');
-- without the option: no schema event
SELECT * FROM se_peek();
SELECT * FROM se_events('schema-events', '1');
-- a new decoding session writes the shape again, before its first change
INSERT INTO se_a VALUES (3, 3.5, 'c');
SELECT * FROM se_events('schema-events', '1');

-- 2. every kind of shape change, each followed by a change; one DDL
-- inside the transaction between two changes; a no-op DDL (a comment) and
-- a DDL that changes nothing the shape holds (a default) give none
ALTER TABLE se_a ADD COLUMN m se_mood;
INSERT INTO se_a VALUES (4, 4, 'd', 'ok');
BEGIN;
UPDATE se_a SET s = 'd2' WHERE id = 4;
ALTER TABLE se_a RENAME COLUMN s TO label;
UPDATE se_a SET label = 'd3' WHERE id = 4;
COMMIT;
ALTER TABLE se_a ALTER COLUMN n TYPE numeric(12,3);
UPDATE se_a SET n = 4.125 WHERE id = 4;
ALTER TABLE se_a ALTER COLUMN label SET NOT NULL;
DELETE FROM se_a WHERE id = 1;
ALTER TABLE se_a DROP COLUMN m;
INSERT INTO se_a VALUES (5, 5, 'e');
COMMENT ON TABLE se_a IS 'no shape change';
ALTER TABLE se_a ALTER COLUMN label SET DEFAULT 'x';
INSERT INTO se_a VALUES (6, 6, 'f');
-- key change: a unique index as replica identity, then a new primary key
CREATE UNIQUE INDEX se_a_label ON se_a (label);
ALTER TABLE se_a REPLICA IDENTITY USING INDEX se_a_label;
UPDATE se_a SET n = 7 WHERE id = 6;
ALTER TABLE se_a REPLICA IDENTITY FULL;
UPDATE se_a SET n = 8 WHERE id = 6;
ALTER TABLE se_a REPLICA IDENTITY NOTHING;
UPDATE se_a SET n = 9 WHERE id = 6;
ALTER TABLE se_a REPLICA IDENTITY DEFAULT;
ALTER TABLE se_a DROP CONSTRAINT se_a_pkey;
ALTER TABLE se_a ADD PRIMARY KEY (id, label);
UPDATE se_a SET n = 10 WHERE id = 6;
-- a rename of the table: its new name, same relid
ALTER TABLE se_a RENAME TO se_b;
TRUNCATE se_b;
SELECT * FROM se_events('schema-events', '1');

-- 3. a schema event carries the seq of the event after it and takes none
-- (it depends on the decoding session; the other events keep their seq)
ALTER TABLE se_b ADD COLUMN z int;
INSERT INTO se_b VALUES (7, 7, 'g', 1);
SELECT count(*) FILTER (WHERE d->>'op' = 's') AS schema_events,
       array_agg((d->>'seq')::int ORDER BY n) FILTER (WHERE d ? 'seq') AS seqs,
       max((d->>'events')::int) AS events
  FROM (SELECT row_number() OVER () AS n, data::jsonb AS d
          FROM se_peek('schema-events', '1') data) e;
-- the other events are the same with and without schema events
SELECT (SELECT array_agg(data) FROM se_peek('schema-events', '1') data
         WHERE data NOT LIKE '{"op":"s"%')
       = (SELECT array_agg(data) FROM se_peek() data) AS same_other_events;
-- batch-events and key-prefix: the schema event is an event like the others
SELECT * FROM se_peek('schema-events', '1', 'batch-events', '1', 'key-prefix', '1');
SELECT count(*) > 0 AS consumed FROM se_events();

-- 4. partition-root: the root's shape, once for all partitions; a column
-- added to the root changes it
CREATE TABLE se_p (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE se_p1 PARTITION OF se_p FOR VALUES FROM (0) TO (10);
CREATE TABLE se_p2 PARTITION OF se_p FOR VALUES FROM (10) TO (20);
INSERT INTO se_p VALUES (1, 'a'), (11, 'b');
ALTER TABLE se_p ADD COLUMN w int;
INSERT INTO se_p VALUES (2, 'c', 2), (12, 'd', 12);
SELECT * FROM se_peek('schema-events', '1', 'partition-root', '1');
SELECT * FROM se_events('schema-events', '1');

-- 5. table_schema(): the same body, "snapshot":true instead of the tail
SELECT regexp_replace(cdc_relay.table_schema('se_b'), '"relid":[0-9]+', '"relid":0');
SELECT regexp_replace(cdc_relay.table_schema('se_p2', '{partition-root,1}'),
                      '"relid":[0-9]+', '"relid":0');
SELECT regexp_replace(cdc_relay.table_schema('se_p'), '"relid":[0-9]+', '"relid":0');
-- it equals the stream's schema event but for the tail
INSERT INTO se_b VALUES (8, 8, 'h', 2);
SELECT (SELECT data::jsonb - 'seq' - 'ts' - 'lsn' - 'xid' - 'commit_lsn'
          FROM pg_logical_slot_peek_changes('se_slot', NULL, NULL, 'schema-events', '1')
         WHERE data LIKE '{"op":"s"%')
       = cdc_relay.table_schema('se_b')::jsonb - 'snapshot' AS same_body;
CREATE SEQUENCE se_b_seq;
SELECT cdc_relay.table_schema('se_b_seq'::regclass);

-- 6. types: a value added to an enum changes no shape, a rename of the type does
CREATE TABLE se_t (id int PRIMARY KEY, m se_mood);
SELECT count(*) > 0 AS consumed FROM se_events();
INSERT INTO se_t VALUES (1, 'ok');
ALTER TYPE se_mood ADD VALUE 'meh';
INSERT INTO se_t VALUES (2, 'meh');
ALTER TYPE se_mood RENAME TO se_feeling;
INSERT INTO se_t VALUES (3, 'sad');
SELECT * FROM se_events('schema-events', '1');
SELECT 'drop' FROM pg_drop_replication_slot('se_slot');
