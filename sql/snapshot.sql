-- snapshot: the two functions behind the relay's initial snapshot.
--
-- cdc_relay.snapshot_tables(options) lists the tables to read: permanent
-- ordinary tables and leaf partitions on which the plugin, run with the same
-- options, emits inserts (include-tables / exclude-tables, publications with
-- their partition ancestors, schemas and FOR ALL TABLES, partition-root
-- names); never temporary or unlogged tables, partitioned parents, views or
-- system catalogs.  Checked against what the plugin actually emits.
--
-- cdc_relay.snapshot_row(rel, row, lsn, options) writes one row as <key> TAB
-- <snapshot read event>.  Checked byte for byte against the plugin's insert
-- event for the same row, for a wide set of types and edge values, under
-- the session settings that output functions read, for partitions (root
-- names and column order with partition-root), dropped, generated and
-- added columns, replica identity indexes, tables without a key and odd
-- names; and its errors.
\set VERBOSITY default

CREATE SCHEMA snap;
CREATE SCHEMA "Snap Odd";
CREATE TYPE snap.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE snap.comp AS (i int, t text, ts timestamptz, iv interval, b bytea, f float8, m money);
CREATE DOMAIN snap.posint AS int CHECK (VALUE > 0);
CREATE DOMAIN snap.intarr AS int[];

CREATE TABLE snap.t_pk (id int PRIMARY KEY, v text);
CREATE TABLE snap.t_nokey (a int, b text);
CREATE TABLE snap.t_ri (id int NOT NULL, code text NOT NULL, v text, PRIMARY KEY (id));
CREATE UNIQUE INDEX t_ri_code_id ON snap.t_ri (code, id);
ALTER TABLE snap.t_ri REPLICA IDENTITY USING INDEX t_ri_code_id;
CREATE UNLOGGED TABLE snap.t_unlogged (id int PRIMARY KEY);
CREATE TEMP TABLE snap_temp (id int PRIMARY KEY);
CREATE VIEW snap.v AS SELECT 1 AS x;
CREATE MATERIALIZED VIEW snap.mv AS SELECT 1 AS x;
CREATE SEQUENCE snap.seq;
CREATE TABLE "Snap Odd"."we""ird.name" ("id ""q""" int PRIMARY KEY, "tab	col" text, "é" int);
-- partitions: p_2 has its own physical layout (a dropped column, other
-- order), p_3 is itself partitioned
CREATE TABLE snap.p (id int PRIMARY KEY, region text, v text) PARTITION BY RANGE (id);
CREATE TABLE snap.p_1 PARTITION OF snap.p FOR VALUES FROM (0) TO (100);
CREATE TABLE snap.p_2 (junk int, v text, region text, id int NOT NULL);
ALTER TABLE snap.p_2 DROP COLUMN junk;
ALTER TABLE snap.p ATTACH PARTITION snap.p_2 FOR VALUES FROM (100) TO (200);
CREATE TABLE snap.p_3 PARTITION OF snap.p FOR VALUES FROM (200) TO (300) PARTITION BY RANGE (id);
CREATE TABLE snap.p_3a PARTITION OF snap.p_3 FOR VALUES FROM (200) TO (300);
-- every kind of value the encoder knows, plus a dropped and a generated column
CREATE TABLE snap.wide (
    id int PRIMARY KEY, dropped_a int,
    i2 int2, i4 int4, i8 int8, o oid, f4 float4, f8 float8, n numeric, b bool,
    t text, vc varchar(10), ch char(4), j json, jb jsonb, by bytea,
    d date, tm time, ttz timetz, ts timestamp, tstz timestamptz, iv interval,
    a_i4 int4[], a_t text[], a_2d int[][], a_jb jsonb[], a_ts timestamptz[],
    a_f8 float8[], a_n numeric[], a_dom snap.intarr[],
    u uuid, ip inet, m money, pt point, r int4range, tr tstzrange,
    c snap.comp, e snap.mood, dm snap.posint, da snap.intarr, bits bit varying,
    g int GENERATED ALWAYS AS (i2 * 2) STORED);
ALTER TABLE snap.wide DROP COLUMN dropped_a;

CREATE PUBLICATION snap_pub_t FOR TABLE snap.t_pk, snap.t_ri;
CREATE PUBLICATION snap_pub_root FOR TABLE snap.p;
CREATE PUBLICATION snap_pub_mid FOR TABLE snap.p_3;
CREATE PUBLICATION snap_pub_schema FOR TABLES IN SCHEMA "Snap Odd";
CREATE PUBLICATION snap_pub_all FOR ALL TABLES;
CREATE PUBLICATION snap_pub_upd FOR TABLE snap.t_nokey WITH (publish = 'update, delete');

SELECT 'init' FROM pg_create_logical_replication_slot('snapshot_slot', 'cdc_relay');

BEGIN;
INSERT INTO snap.t_pk VALUES (1, 'one'), (2, E'two\ttab'), (3, NULL);
INSERT INTO snap.t_nokey VALUES (1, 'x'), (NULL, NULL);
INSERT INTO snap.t_ri VALUES (1, 'b', 'v1'), (2, 'a', 'v2');
INSERT INTO snap.t_unlogged VALUES (1);
INSERT INTO snap_temp VALUES (1);
INSERT INTO "Snap Odd"."we""ird.name" VALUES (1, E'q"\\\x01', 2);
INSERT INTO snap.p VALUES (1, 'eu', 'a'), (101, 'us', 'b'), (201, 'eu', 'c');
INSERT INTO snap.wide (id, i2, i4, i8, o, f4, f8, n, b, t, vc, ch, j, jb, by, d, tm, ttz, ts, tstz, iv,
                       a_i4, a_t, a_2d, a_jb, a_ts, a_f8, a_n, a_dom,
                       u, ip, m, pt, r, tr, c, e, dm, da, bits) VALUES
  (1, 1, 2, 3, 4, 1.5, 0.1, 1.50, true, 'text', 'varchar', 'ch', '{"a": 1}', '{"b": [1, 2]}', '\xdeadbeef',
   '2024-02-29', '12:34:56.789', '12:34:56+05:30', '2024-01-02 03:04:05.5', '2024-01-02 03:04:05.123456+02',
   '1 year 2 mons 3 days 04:05:06.5',
   '{1,2,NULL}', '{a,"b c",NULL}', '{{1,2},{3,4}}', ARRAY['{"x": 1}'::jsonb, 'null'], '{"2024-01-02 03:04:05+00"}',
   '{1.5,NaN,-Infinity}', '{1.10,NaN}', ARRAY['{1,2}'::snap.intarr],
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '192.168.0.1/24', 12.34, '(1,2)', '[1,10)',
   '["2024-01-01 00:00:00+00","2024-01-02 00:00:00+00")',
   ROW(1, 'comp "t"', '2024-01-02 03:04:05+00', '1 day 02:00:00', '\x0102', 0.1, 5.5),
   'happy', 7, '{7,8}', B'1011'),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (3, -32768, -2147483648, -9223372036854775808, 4294967295, 'NaN', '-Infinity', 'NaN', false,
   E'ctl \x01\x1f\r\n\t "q" \\ é 😀', '', 'a   ', E'{"a":\t1,\n"b": [1,\r\n2]}', 'null', '\x0001ff',
   '0044-03-15 BC', '24:00:00', '00:00:00-14:59', '-infinity', 'infinity', '-178000000 years',
   '[0:1]={1,2}', '{}', '{}', ARRAY[NULL::jsonb], '[0:0]={"1999-12-31 23:59:59.5+00"}',
   '{-0,1e+308,1e-300}', '{Infinity,-0.000}', '{}',
   '00000000-0000-0000-0000-000000000000', '::1', -92233720368547758.08, '(-0,1e+300)', 'empty',
   '(,"2024-01-01 00:00:00+00"]', ROW(NULL, E'\n', NULL, NULL, NULL, 'NaN', NULL), 'sad', 1, '{}', B''),
  (4, 32767, 2147483647, 9223372036854775807, 0, '-0', '1e-300', '-0.000000000000000000001', NULL,
   repeat('x', 3000), E'\\', ' ', '"just a string"', '{"a": {"b": null}, "c": "\u00e9\n"}', '\x',
   '10000-01-01', '00:00:00.000001', '23:59:59.999999+14:59', '294276-12-31 23:59:59.999999',
   '1999-12-31 23:59:59.000001+00', '-1 days +00:00:00.000001',
   '{{{1}}}', ARRAY[E'\t', '"', '\'], '{{NULL,NULL}}', '{}', '{}', '{1e-45}', '{123456789012345678901234567890.123}', '{}',
   NULL, '::ffff:1.2.3.4/128', 0, '(0,0)', '(,)', 'empty', NULL, 'ok', 2147483647, '{-1}', B'0');
COMMIT;

-- Every snapshot row of a table under some options, via the relay's call.
-- The row is passed as t.*: a bare t would be the column t of snap.wide.
CREATE FUNCTION snap_rows(rel regclass, opts text[] DEFAULT '{}')
RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
  RETURN QUERY EXECUTE format(
    'SELECT cdc_relay.snapshot_row(%L::regclass, t.*, %L, %L) FROM ONLY %s t',
    rel, '0/16B3748', opts, rel);
END $$;

--
-- snapshot_row: what it writes
--
SELECT replace(s, E'\t', '<TAB>') AS s FROM snap_rows('snap.t_pk') s ORDER BY 1;
-- no key: key null; replica identity index: its columns, in index order
SELECT replace(s, E'\t', '<TAB>') AS s FROM snap_rows('snap.t_nokey') s ORDER BY 1;
SELECT replace(s, E'\t', '<TAB>') AS s FROM snap_rows('snap.t_ri') s ORDER BY 1;
-- names that need escaping
SELECT replace(s, E'\t', '<TAB>') AS s FROM snap_rows('"Snap Odd"."we""ird.name"') s;
-- options: numeric-as, include-lsn (other options do not change a read event)
SELECT replace(s, E'\t', '<TAB>') AS s
  FROM snap_rows('snap.wide', '{numeric-as,number,include-lsn,false,include-xids,false,include-timestamp,false,actions,delete,key-prefix,false}') s
 WHERE s LIKE '{"id":1}%';
-- json null, special floats and numerics
SELECT replace(s, E'\t', '<TAB>') AS s FROM snap_rows('snap.wide') s WHERE s LIKE '{"id":3}%';
-- partitions: the leaf's names and layout, or with partition-root the
-- root's names and column order (p_2 stores v, region, id)
SELECT replace(s, E'\t', '<TAB>') AS s FROM snap_rows('snap.p_2') s;
SELECT replace(s, E'\t', '<TAB>') AS s FROM snap_rows('snap.p_2', '{partition-root,true}') s;
SELECT replace(s, E'\t', '<TAB>') AS s FROM snap_rows('snap.p_3a', '{partition-root,true}') s;
-- the relay's COPY
COPY (SELECT cdc_relay.snapshot_row('snap.t_pk'::regclass, t, '0/16B3748', '{}') FROM ONLY snap.t_pk t ORDER BY id)
  TO STDOUT (FORMAT csv, DELIMITER E'\x1f', QUOTE E'\x01');

--
-- snapshot_row equals the plugin's insert event for the same row, byte for
-- byte: <key> TAB {"op":"r", same fields, "lsn":<lsn>,"snapshot":true}
--
CREATE TEMP TABLE snap_decoded AS
SELECT data FROM pg_logical_slot_peek_changes('snapshot_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0', 'key-prefix', '1');
CREATE TEMP TABLE snap_decoded_root AS
SELECT data FROM pg_logical_slot_peek_changes('snapshot_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0', 'key-prefix', '1',
       'partition-root', '1', 'numeric-as', 'number');
-- the decoded insert, made into the read event snapshot_row must write
CREATE FUNCTION snap_expected(line text, lsn boolean DEFAULT true) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT regexp_replace(regexp_replace(line, E'\t\\{"op":"c"', E'\t{"op":"r"'),
                        ',"seq":\d+\}$',
                        CASE WHEN lsn THEN ',"lsn":"0/16B3748","snapshot":true}'
                             ELSE ',"snapshot":true}' END)
$$;
-- per table: rows, rows whose snapshot line equals the decoded insert
CREATE FUNCTION snap_compare(decoded regclass, opts text[] DEFAULT '{}',
    OUT tbl text, OUT rows bigint, OUT equal bigint)
RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE
  rel regclass;
BEGIN
  FOR rel IN SELECT unnest(ARRAY['snap.t_pk', 'snap.t_nokey', 'snap.t_ri', '"Snap Odd"."we""ird.name"',
                                 'snap.p_1', 'snap.p_2', 'snap.p_3a', 'snap.wide']::regclass[])
  LOOP
    tbl := rel::text;
    EXECUTE format(
      'SELECT count(*), count(*) FILTER (WHERE s IN (SELECT snap_expected(data, NOT %L::text[] @> ''{include-lsn,false}'') FROM %s))
         FROM (SELECT cdc_relay.snapshot_row(%L::regclass, t.*, ''0/16B3748'', %L) AS s FROM ONLY %s t) x',
      opts, decoded, rel, opts, rel)
      INTO rows, equal;
    RETURN NEXT;
  END LOOP;
END $$;

SELECT * FROM snap_compare('snap_decoded');
SELECT * FROM snap_compare('snap_decoded_root', '{partition-root,on,numeric-as,number}');
-- rows that differ, if any
SELECT s FROM snap_rows('snap.wide') s
 WHERE s NOT IN (SELECT snap_expected(data) FROM snap_decoded);

-- Output functions (composites, ranges, money, arrays with bounds) read
-- session settings; snapshot_row fixes them as the plugin does while it
-- encodes and leaves the session's own values alone.
SET DateStyle = 'SQL, DMY';
SET TimeZone = 'America/New_York';
SET IntervalStyle = 'sql_standard';
SET extra_float_digits = 0;
SET bytea_output = 'escape';
SET lc_monetary = 'POSIX';
SELECT * FROM snap_compare('snap_decoded') WHERE tbl = 'snap.wide';
SHOW DateStyle;
SHOW TimeZone;
SHOW IntervalStyle;
SHOW extra_float_digits;
SHOW bytea_output;
SHOW lc_monetary;
-- the same with the plugin's settings already in effect (nothing to set)
SET DateStyle = 'ISO, YMD';
SET TimeZone = 'UTC';
SET IntervalStyle = 'iso_8601';
SET extra_float_digits = 1;
SET bytea_output = 'hex';
SET lc_monetary = 'C';
SELECT * FROM snap_compare('snap_decoded') WHERE tbl = 'snap.wide';
RESET ALL;

-- Never a raw 0x01, 0x1f, CR or LF (COPY's quote and delimiter, line ends);
-- the first tab ends the key, which is the event's key; the event is JSON.
SELECT count(*) AS lines,
       count(*) FILTER (WHERE s ~ E'[\x01\x1f\r\n]') AS bad_bytes,
       count(*) FILTER (WHERE split_part(s, E'\t', 1)::jsonb
                              = (substr(s, strpos(s, E'\t') + 1)::jsonb)->'key') AS key_ok,
       count(*) FILTER (WHERE (substr(s, strpos(s, E'\t') + 1)::jsonb)->>'op' = 'r'
                          AND (substr(s, strpos(s, E'\t') + 1)::jsonb)->'snapshot' = 'true') AS read_events
  FROM (SELECT snap_rows(relid) AS s FROM cdc_relay.snapshot_tables('{include-tables,"snap.*,\"Snap Odd\".*"}')) x;

-- dates and timestamps have their own fast path for the years 1 to 9999:
-- the same text as PostgreSQL's JSON, over a spread of values and edges
SET TimeZone = 'UTC';
CREATE TEMP TABLE snap_dt (id int PRIMARY KEY, d date, ts timestamp, tz timestamptz);  -- not decoded
INSERT INTO snap_dt
SELECT g, '0001-01-01'::date + g * 183,
       '0001-01-01'::timestamp + g * interval '182 days 07:13:01.234567',
       '0001-01-01 00:00:00+00'::timestamptz + g * interval '182 days 23:59:59.99999'
  FROM generate_series(0, 21000) g;
INSERT INTO snap_dt VALUES
  (-1, '0001-12-31 BC', '0001-12-31 23:59:59.999999 BC', '0001-12-31 23:59:59.999999+00 BC'),
  (-2, '9999-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00'),
  (-3, 'infinity', '-infinity', 'infinity'),
  (-4, '2000-01-01', '1999-12-31 23:59:59.9', '2000-01-01 00:00:00.000001+00'),
  (-5, '1999-12-31', '2000-01-01 00:00:00', '1999-12-31 23:59:59+00');
SELECT count(*) AS values_compared,
       count(*) FILTER (WHERE a->>'d' = to_json(d)#>>'{}' AND a->>'ts' = to_json(ts)#>>'{}'
                          AND a->>'tz' = to_json(tz)#>>'{}') AS same_as_to_json,
       max(d) > '10000-01-01' AS beyond_9999
  FROM (SELECT x.*, (split_part(cdc_relay.snapshot_row('snap_dt'::regclass, x.*, '0/1'), E'\t', 2)::json)->'after' AS a
          FROM snap_dt x) y;
RESET TimeZone;

-- a column added with a default after rows were written: the row has it
ALTER TABLE snap.t_pk ADD COLUMN added int DEFAULT 42;
SELECT replace(s, E'\t', '<TAB>') AS s FROM snap_rows('snap.t_pk') s ORDER BY 1;
-- a call site whose options change from row to row follows them
SELECT split_part(cdc_relay.snapshot_row('snap.t_pk'::regclass, t, '0/1', o), E'\t', 2) AS s
  FROM ONLY snap.t_pk t,
       (VALUES (1, '{}'::text[]), (2, '{include-lsn,false}')) AS opt(n, o)
 WHERE id = 1 ORDER BY n;
ALTER TABLE snap.t_pk DROP COLUMN added;

--
-- snapshot_row: errors
--
-- not the table's row type
SELECT cdc_relay.snapshot_row('snap.t_pk'::regclass, t, '0/1') FROM snap.t_nokey t;
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT cdc_relay.snapshot_row('snap.t_pk'::regclass, ROW(1, 'x'), '0/1');
\echo sqlstate :LAST_ERROR_SQLSTATE
-- a partition's row given with its parent, and the other way round
SELECT cdc_relay.snapshot_row('snap.p_1'::regclass, t, '0/1') FROM snap.p t;
\echo sqlstate :LAST_ERROR_SQLSTATE
-- not a table
SELECT cdc_relay.snapshot_row('snap.p'::regclass, t, '0/1') FROM snap.p t;
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT cdc_relay.snapshot_row('snap.v'::regclass, t, '0/1') FROM snap.v t;
\echo sqlstate :LAST_ERROR_SQLSTATE
-- bad options: the plugin's errors
SELECT cdc_relay.snapshot_row('snap.t_pk'::regclass, t, '0/1', '{bogus,1}') FROM snap.t_pk t;
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT cdc_relay.snapshot_row('snap.t_pk'::regclass, t, '0/1', '{numeric-as,float}') FROM snap.t_pk t;
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT cdc_relay.snapshot_row('snap.t_pk'::regclass, t, '0/1', '{partition-root}') FROM snap.t_pk t;
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT cdc_relay.snapshot_row('snap.t_pk'::regclass, t, '0/1', '{{a,b},{c,d}}') FROM snap.t_pk t;
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT cdc_relay.snapshot_row('snap.t_pk'::regclass, t, '0/1', ARRAY['include-lsn', NULL]) FROM snap.t_pk t;
\echo sqlstate :LAST_ERROR_SQLSTATE
-- NULL arguments: NULL (the function is strict)
SELECT cdc_relay.snapshot_row('snap.t_pk'::regclass, t, NULL) IS NULL AS is_null FROM snap.t_pk t WHERE id = 1;

--
-- snapshot_tables
--
-- default options: every permanent ordinary table and leaf partition, no
-- partitioned parent, view, materialized view, sequence, temporary or
-- unlogged table
SELECT * FROM cdc_relay.snapshot_tables() WHERE schema_name IN ('snap', 'Snap Odd');
-- ... and nothing from pg_catalog, information_schema, pg_toast or the
-- extension's own schema (cdc_relay.snapshot_jobs): the same set as the
-- catalog query
SELECT (SELECT array_agg(relid::oid ORDER BY relid) FROM cdc_relay.snapshot_tables())
       = (SELECT array_agg(c.oid ORDER BY c.oid) FROM pg_class c
           WHERE c.relkind = 'r' AND c.relpersistence = 'p'
             AND c.relnamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'cdc_relay'))
       AS same_as_catalog;
-- ordered by schema, table, relid; sizes from pg_class
ANALYZE snap.t_pk;
SELECT bool_and(s.reltuples = c.reltuples AND s.relpages = c.relpages) AS sizes_ok,
       array_agg(s.relid) = array_agg(s.relid ORDER BY s.schema_name, s.table_name, s.relid) AS ordered
  FROM cdc_relay.snapshot_tables() s JOIN pg_class c ON c.oid = s.relid;
SELECT relid, reltuples, relpages > 0 AS has_pages FROM cdc_relay.snapshot_tables('{include-tables,snap.t_pk}');
-- with partition-root the leaves carry the root's names
SELECT relid, schema_name, table_name FROM cdc_relay.snapshot_tables('{partition-root,true,include-tables,snap.p*}');
SELECT relid, schema_name, table_name FROM cdc_relay.snapshot_tables('{include-tables,snap.p*}');
-- patterns match the names the events carry
SELECT relid FROM cdc_relay.snapshot_tables('{include-tables,snap.p}');
SELECT relid FROM cdc_relay.snapshot_tables('{include-tables,snap.p,partition-root,on}');
SELECT relid FROM cdc_relay.snapshot_tables('{include-tables,"snap.t_*,\"Snap Odd\".*",exclude-tables,t_nokey}');
-- actions without insert: nothing to snapshot
SELECT count(*) FROM cdc_relay.snapshot_tables('{actions,"update,delete"}');

-- publications: membership as the plugin decides it, publishing inserts
SELECT relid, schema_name, table_name FROM cdc_relay.snapshot_tables('{publication,snap_pub_t}');
SELECT relid, schema_name, table_name FROM cdc_relay.snapshot_tables('{publication,snap_pub_root}');
SELECT relid, schema_name, table_name FROM cdc_relay.snapshot_tables('{publication,snap_pub_mid,partition-root,true}');
SELECT relid, schema_name, table_name FROM cdc_relay.snapshot_tables('{publication,"snap_pub_schema,snap_pub_upd"}');
SELECT (SELECT array_agg(relid) FROM cdc_relay.snapshot_tables('{publication,snap_pub_all}'))
       = (SELECT array_agg(relid) FROM cdc_relay.snapshot_tables()) AS all_tables;
SELECT count(*) FROM cdc_relay.snapshot_tables('{publication,snap_pub_all,include-tables,snap.t_pk}');

-- the same tables as the plugin's inserts, for many option sets
CREATE FUNCTION snap_same_tables(VARIADIC opts text[], OUT same boolean, OUT tables text)
LANGUAGE sql AS $$
  WITH p AS (SELECT DISTINCT format('%s.%s', d->>'schema', d->>'table') AS name
               FROM (SELECT data::jsonb AS d
                       FROM pg_logical_slot_peek_changes('snapshot_slot', NULL, NULL, VARIADIC opts)) e
              WHERE d->>'op' = 'c' AND d->>'schema' IN ('snap', 'Snap Odd')),
       s AS (SELECT DISTINCT format('%s.%s', schema_name, table_name) AS name
               FROM cdc_relay.snapshot_tables(opts) WHERE schema_name IN ('snap', 'Snap Odd'))
  SELECT (SELECT array_agg(name ORDER BY name) FROM p)
         IS NOT DISTINCT FROM (SELECT array_agg(name ORDER BY name) FROM s),
         (SELECT string_agg(name, ' ' ORDER BY name) FROM s)
$$;
SELECT o AS options, s.*
  FROM (VALUES ('{}'::text[]), ('{partition-root,on}'), ('{include-tables,"snap.t*"}'),
               ('{exclude-tables,"*.p_?,wide"}'), ('{include-tables,snap.p,partition-root,on}'),
               ('{publication,snap_pub_t}'), ('{publication,snap_pub_root}'),
               ('{publication,snap_pub_root,partition-root,on}'), ('{publication,snap_pub_mid}'),
               ('{publication,snap_pub_schema}'), ('{publication,snap_pub_upd}'),
               ('{publication,"snap_pub_all,snap_pub_upd"}'),
               ('{publication,snap_pub_all,exclude-tables,snap.t_pk}'),
               ('{actions,"delete,update"}'), ('{actions,insert,publication,snap_pub_t}')) v(o),
       LATERAL snap_same_tables(VARIADIC o) s;

-- errors: the plugin's
SELECT * FROM cdc_relay.snapshot_tables('{publication,snap_no_such_pub}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM cdc_relay.snapshot_tables('{include-tables,"snap.\"unterminated"}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM cdc_relay.snapshot_tables('{format-version,2}');
\echo sqlstate :LAST_ERROR_SQLSTATE
SELECT * FROM cdc_relay.snapshot_tables('{include-lsn}');
\echo sqlstate :LAST_ERROR_SQLSTATE

\set VERBOSITY terse
SELECT pg_drop_replication_slot('snapshot_slot');
DROP PUBLICATION snap_pub_t, snap_pub_root, snap_pub_mid, snap_pub_schema, snap_pub_all, snap_pub_upd;
DROP FUNCTION snap_rows(regclass, text[]), snap_expected(text, boolean),
              snap_compare(regclass, text[]), snap_same_tables(text[]);
DROP SCHEMA snap, "Snap Odd" CASCADE;
